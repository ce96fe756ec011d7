// Every database, kept live from one `GET /databases?watch=true` stream
// shared by the pages that show databases: the snapshot first, then each
// `changed` and `deleted` event. When the stream drops it is opened again
// and its new snapshot replaces what was held (nothing is patched over a
// gap). The stream is closed a moment after the last page stops looking.

import { useEffect, useState } from 'preact/hooks';
import { follow } from './api.js';

const subscribers = new Set();
let databases = new Map();
let loaded = false;
let status = 'connecting';
let abort = null;
let closeTimer = null;

function publish() {
  for (const fn of subscribers) fn();
}

function open() {
  abort = new AbortController();
  status = 'connecting';
  follow('/databases?watch=true', {
    signal: abort.signal,
    onStatus: (s) => {
      status = s;
      // Every role may watch: a refusal here means the stream cannot be
      // had at all; the pages say so rather than wait forever.
      if (s === 'failed') loaded = true;
      publish();
    },
    onEvent: ({ event, data }) => {
      if (event === 'snapshot') {
        databases = new Map(data.items.map((d) => [d.name, d]));
        loaded = true;
      } else if (event === 'changed') {
        databases = new Map(databases).set(data.name, data);
      } else if (event === 'deleted') {
        databases = new Map(databases);
        databases.delete(data.name);
      }
      publish();
    },
  });
}

function subscribe(fn) {
  clearTimeout(closeTimer);
  subscribers.add(fn);
  if (!abort) open();
  return () => {
    subscribers.delete(fn);
    if (!subscribers.size) {
      closeTimer = setTimeout(() => {
        if (subscribers.size || !abort) return;
        abort.abort();
        abort = null;
        databases = new Map();
        loaded = false;
      }, 2000);
    }
  };
}

/** Closes the stream now (on logout). */
export function closeWatch() {
  clearTimeout(closeTimer);
  abort?.abort();
  abort = null;
  databases = new Map();
  loaded = false;
}

/** {databases: Map, loaded, status}, re-rendered on every change. */
export function useDatabases() {
  const [, tick] = useState(0);
  useEffect(() => subscribe(() => tick((n) => n + 1)), []);
  return { databases, loaded, status };
}

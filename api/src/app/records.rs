//! Reading the records: a database's service events and audit records
//! (also after it is gone), and the whole audit trail.

use super::{App, AppError};
use crate::model::check_name;
use crate::model::paging::Page;
use crate::records::{AuditQuery, AuditRecord, EventQuery, ServiceEvent};

impl App {
    /// Events newest first. A page that is empty for a name that never had
    /// an event and is no database is a 404, not an empty list.
    pub async fn events(&self, query: &EventQuery) -> Result<Page<ServiceEvent>, AppError> {
        let page = self.events.query(query).await?;
        if let Some(name) = &query.database {
            if page.items.is_empty() && query.span.cursor.is_none() {
                self.check_ever_existed(name).await?;
            }
        }
        Ok(page)
    }

    /// A name that found no event: a 404 unless it had events once or is
    /// a database now.
    pub(super) async fn check_ever_existed(&self, name: &str) -> Result<(), AppError> {
        if !self.events.knows(name) && self.backend.get(name).await.is_err() {
            return Err(AppError::NeverExisted(name.to_owned()));
        }
        Ok(())
    }

    /// Audit records newest first; on the per-database route the name must
    /// be a database name (it may be one that is gone).
    pub async fn audit_records(&self, query: &AuditQuery) -> Result<Page<AuditRecord>, AppError> {
        Ok(self.audit.query(query).await?)
    }

    /// A path name that cannot be a database's names none, now or before.
    pub fn check_database_name(name: &str) -> Result<(), AppError> {
        check_name(name).map_err(|_| AppError::NeverExisted(name.to_owned()))
    }
}

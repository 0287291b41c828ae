//! `catalog.readers` in the data plane: the Region's readers (streaming replicas) as the
//! operator publishes them (`Region.status.readers`, ADR 0005), followed with the rest of
//! the catalog. [`crate::db::catalog_readers::CatalogReaders`] turns them into reader pools.

use std::sync::{Arc, PoisonError, RwLock};

use phoenix_catalog::ReaderRow;
use phoenix_catalog::readers::READER_COLUMNS;

use super::CatalogError;

/// Reads every published reader, in `spec.database.readers` order.
pub async fn load_readers(client: &tokio_postgres::Client) -> Result<Vec<ReaderRow>, CatalogError> {
    let sql = format!("SELECT {READER_COLUMNS} FROM catalog.readers ORDER BY ordinal");
    let rows = client.query(&sql, &[]).await?;
    Ok(rows
        .iter()
        .map(ReaderRow::from_row)
        .collect::<Result<_, _>>()?)
}

/// The published readers, shared by the follower (which replaces them) and the reader
/// source (which builds pools for them). Every change bumps a version, so the source
/// rebuilds only when the list changed.
#[derive(Clone, Debug, Default)]
pub struct PublishedReaders {
    current: Arc<RwLock<(u64, Arc<Vec<ReaderRow>>)>>,
}

impl PublishedReaders {
    /// Replaces the list; returns whether it changed.
    pub fn replace(&self, readers: Vec<ReaderRow>) -> bool {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if *current.1 == readers {
            return false;
        }
        if readers.is_empty() {
            tracing::info!("no readers published: reads go to the writer");
        } else {
            let endpoints: Vec<String> = readers
                .iter()
                .map(|r| {
                    format!(
                        "{} ({})",
                        r.endpoint(),
                        if r.healthy { "healthy" } else { "unhealthy" }
                    )
                })
                .collect();
            tracing::info!(?endpoints, "published readers changed");
        }
        *current = (current.0 + 1, Arc::new(readers));
        true
    }

    /// The version of the list and the list.
    pub fn current(&self) -> (u64, Arc<Vec<ReaderRow>>) {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        (current.0, current.1.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(ordinal: i32, healthy: bool) -> ReaderRow {
        ReaderRow {
            ordinal,
            host: "replica".into(),
            port: 5432 + ordinal,
            dbname: "phoenix".into(),
            sslmode: "disable".into(),
            healthy,
        }
    }

    #[test]
    fn only_a_changed_list_bumps_the_version() {
        let published = PublishedReaders::default();
        assert_eq!(published.current().0, 0);
        assert!(published.current().1.is_empty());
        assert!(published.replace(vec![reader(0, true)]));
        assert_eq!(published.current().0, 1);
        assert!(!published.replace(vec![reader(0, true)]), "same list");
        assert_eq!(published.current().0, 1);
        assert!(published.replace(vec![reader(0, false)]), "health changed");
        assert_eq!(published.current().0, 2);
        assert!(published.replace(vec![]));
        assert_eq!(*published.current().1, vec![]);
    }
}

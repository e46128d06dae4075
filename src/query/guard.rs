//! What a query statement may do: read. The rule SQLite's authorizer applies to every
//! statement a client sends, as it is prepared (not string matching: SQLite says what the
//! compiled statement would do, views and CTEs included).
//!
//! Allowed: `SELECT`, reading any table or column, recursive CTEs, and every function but
//! those in [`DENIED_FUNCTIONS`]. Everything else is refused and named: writes (`INSERT`,
//! `UPDATE`, `DELETE`), schema changes (`CREATE`/`DROP`/`ALTER` of tables, indexes, views,
//! triggers, virtual tables, temporary ones included), `ATTACH`/`DETACH`, every `PRAGMA`
//! (those that read too: the engine sets what it needs itself), transactions and
//! savepoints (the engine holds the read transaction), `ANALYZE`, `REINDEX`.

use rusqlite::hooks::{AuthAction, Authorization};

/// Functions a query may not call, by lowercase name: those that load code or touch files
/// (`load_extension`, and `readfile`/`writefile`/`edit` should an extension ever provide
/// them), and `fts3_tokenizer`, whose two-argument form takes a raw pointer.
pub const DENIED_FUNCTIONS: &[&str] = &[
    "load_extension",
    "readfile",
    "writefile",
    "edit",
    "fts3_tokenizer",
];

/// The authorizer's verdict on one action of a client's statement: `Ok` to allow it, or
/// what is refused, in words for the client.
pub fn check(action: &AuthAction<'_>) -> Result<(), String> {
    match action {
        AuthAction::Select | AuthAction::Read { .. } | AuthAction::Recursive => Ok(()),
        AuthAction::Function { function_name } => {
            let name = function_name.to_ascii_lowercase();
            if DENIED_FUNCTIONS.contains(&name.as_str()) {
                Err(format!("the function {name}()"))
            } else {
                Ok(())
            }
        }
        other => Err(describe(other)),
    }
}

/// Names a refused action for the client.
fn describe(action: &AuthAction<'_>) -> String {
    match action {
        // SQLite asks to write the schema table before it names what a CREATE creates.
        AuthAction::Insert { table_name } if table_name.starts_with("sqlite_") => {
            format!("a schema change (CREATE, writing {table_name})")
        }
        AuthAction::Insert { table_name } => format!("INSERT into {table_name}"),
        AuthAction::Update { table_name, .. } => format!("UPDATE of {table_name}"),
        AuthAction::Delete { table_name } if table_name.starts_with("sqlite_") => {
            format!("a schema change (DROP, writing {table_name})")
        }
        AuthAction::Delete { table_name } => format!("DELETE from {table_name}"),
        AuthAction::Pragma { pragma_name, .. } => format!("PRAGMA {pragma_name}"),
        AuthAction::Attach { filename } => format!("ATTACH of {filename:?}"),
        AuthAction::Detach { database_name } => format!("DETACH of {database_name}"),
        AuthAction::CreateTable { table_name } | AuthAction::CreateTempTable { table_name } => {
            format!("CREATE TABLE {table_name}")
        }
        AuthAction::CreateIndex { index_name, .. }
        | AuthAction::CreateTempIndex { index_name, .. } => format!("CREATE INDEX {index_name}"),
        AuthAction::CreateView { view_name } | AuthAction::CreateTempView { view_name } => {
            format!("CREATE VIEW {view_name}")
        }
        AuthAction::CreateTrigger { trigger_name, .. }
        | AuthAction::CreateTempTrigger { trigger_name, .. } => {
            format!("CREATE TRIGGER {trigger_name}")
        }
        AuthAction::CreateVtable { table_name, .. } => format!("CREATE VIRTUAL TABLE {table_name}"),
        AuthAction::DropTable { table_name } | AuthAction::DropTempTable { table_name } => {
            format!("DROP TABLE {table_name}")
        }
        AuthAction::DropIndex { index_name, .. } | AuthAction::DropTempIndex { index_name, .. } => {
            format!("DROP INDEX {index_name}")
        }
        AuthAction::DropView { view_name } | AuthAction::DropTempView { view_name } => {
            format!("DROP VIEW {view_name}")
        }
        AuthAction::DropTrigger { trigger_name, .. }
        | AuthAction::DropTempTrigger { trigger_name, .. } => {
            format!("DROP TRIGGER {trigger_name}")
        }
        AuthAction::DropVtable { table_name, .. } => format!("DROP VIRTUAL TABLE {table_name}"),
        AuthAction::AlterTable { table_name, .. } => format!("ALTER TABLE {table_name}"),
        AuthAction::Transaction { .. } => {
            "a transaction statement (BEGIN, COMMIT, ROLLBACK)".into()
        }
        AuthAction::Savepoint { .. } => "a SAVEPOINT".into(),
        AuthAction::Analyze { .. } => "ANALYZE".into(),
        AuthAction::Reindex { .. } => "REINDEX".into(),
        other => format!("{other:?}"),
    }
}

/// The answer SQLite gets for a verdict: `Deny` makes the statement fail to prepare.
pub fn authorization(verdict: &Result<(), String>) -> Authorization {
    match verdict {
        Ok(()) => Authorization::Allow,
        Err(_) => Authorization::Deny,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pass_and_the_rest_is_named() {
        assert_eq!(check(&AuthAction::Select), Ok(()));
        assert_eq!(check(&AuthAction::Recursive), Ok(()));
        assert_eq!(
            check(&AuthAction::Function {
                function_name: "json_extract"
            }),
            Ok(())
        );
        assert_eq!(
            check(&AuthAction::Function {
                function_name: "LOAD_EXTENSION"
            }),
            Err("the function load_extension()".into())
        );
        assert_eq!(
            check(&AuthAction::Insert {
                table_name: "entries"
            }),
            Err("INSERT into entries".into())
        );
        assert_eq!(
            check(&AuthAction::Attach { filename: "/tmp/x" }),
            Err("ATTACH of \"/tmp/x\"".into())
        );
    }
}

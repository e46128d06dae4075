//! An index's name, read from its statement as SQLite keeps it in its schema (pure).
//!
//! SQLite stores `CREATE INDEX` text with everything up to the object's name in canonical
//! form: `CREATE INDEX name ON ...`, `IF NOT EXISTS` dropped. The name is a bare word or
//! quoted with `"..."` (a doubled `""` inside), `[...]` or `` `...` ``.
//! [`crate::query::vet`] checks, for every statement it keeps, that this reading agrees
//! with the name SQLite gives the index.

/// The name of the index `statement` creates, unquoted; `None` when it is not a
/// canonical `CREATE INDEX` statement.
pub fn index_name(statement: &str) -> Option<String> {
    let rest = statement.strip_prefix("CREATE INDEX ")?;
    let mut chars = rest.chars();
    let name = match chars.next()? {
        '"' => {
            let mut name = String::new();
            loop {
                match chars.next()? {
                    '"' if chars.clone().next() == Some('"') => {
                        chars.next();
                        name.push('"');
                    }
                    '"' => break name,
                    c => name.push(c),
                }
            }
        }
        open @ ('[' | '`') => {
            let close = if open == '[' { ']' } else { '`' };
            let name: String = chars.by_ref().take_while(|c| *c != close).collect();
            name
        }
        first => std::iter::once(first)
            .chain(chars.take_while(|c| !c.is_whitespace() && *c != '('))
            .collect(),
    };
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_bare_and_quoted() {
        let name = index_name;
        assert_eq!(
            name("CREATE INDEX by_value ON entries(value)"),
            Some("by_value".into())
        );
        assert_eq!(
            name("CREATE INDEX \"a \"\"b\"\"\" ON entries(value)"),
            Some("a \"b\"".into())
        );
        assert_eq!(
            name("CREATE INDEX [x y] ON entries(value)"),
            Some("x y".into())
        );
        assert_eq!(name("CREATE INDEX `q` ON entries(value)"), Some("q".into()));
        assert_eq!(name("CREATE UNIQUE INDEX u ON entries(value)"), None);
        assert_eq!(name("SELECT 1"), None);
    }
}

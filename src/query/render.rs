//! An answer written out: CSV with a header row (`Accept: text/csv`, `kappalog query
//! --format csv`) and an aligned text table for a terminal (`--format table`). Both over
//! `impl Write`, so tests compare exact bytes.

use std::io::{self, Write};

use super::{Answer, Cell};

/// The CSV form: a header row of column names, then one record per row
/// ([`Cell::csv_field`]).
pub fn write_csv(answer: &Answer, out: impl Write) -> io::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer
        .write_record(&answer.columns)
        .map_err(io::Error::other)?;
    for row in &answer.rows {
        writer
            .write_record(row.iter().map(Cell::csv_field))
            .map_err(io::Error::other)?;
    }
    writer.flush()
}

/// The longest a table cell is printed; longer text is cut with `...` (JSON and CSV keep
/// every byte).
pub const TABLE_CELL_CHARS: usize = 60;

/// An aligned text table: the column names, a rule, then the rows, NULL as `NULL`; a last
/// line says how many rows and whether the answer was truncated.
pub fn write_table(answer: &Answer, mut out: impl Write) -> io::Result<()> {
    let text: Vec<Vec<String>> = answer
        .rows
        .iter()
        .map(|row| row.iter().map(table_cell).collect())
        .collect();
    let widths: Vec<usize> = answer
        .columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            text.iter()
                .map(|row| row[i].chars().count())
                .chain(std::iter::once(name.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, &width)| format!("{cell:<width$}"))
            .collect();
        padded.join(" | ").trim_end().to_string()
    };
    writeln!(out, "{}", line(&answer.columns))?;
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    writeln!(out, "{}", rule.join("-+-"))?;
    for row in &text {
        writeln!(out, "{}", line(row))?;
    }
    let rows = answer.rows.len();
    let noun = if rows == 1 { "row" } else { "rows" };
    let cut = if answer.truncated { " (truncated)" } else { "" };
    writeln!(out, "({rows} {noun}{cut})")
}

fn table_cell(cell: &Cell) -> String {
    let text = match cell {
        Cell::Null => "NULL".to_string(),
        other => other.csv_field().replace(['\n', '\r', '\t'], " "),
    };
    if text.chars().count() > TABLE_CELL_CHARS {
        let cut: String = text.chars().take(TABLE_CELL_CHARS - 3).collect();
        format!("{cut}...")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> Answer {
        Answer {
            columns: vec!["author".into(), "n".into()],
            rows: vec![
                vec![Cell::Text(b"ab".to_vec()), Cell::Integer(12)],
                vec![Cell::Null, Cell::Real(0.5)],
            ],
            as_of: "start".into(),
            truncated: false,
            digest: String::new(),
        }
    }

    #[test]
    fn csv_has_a_header_row() {
        let mut out = Vec::new();
        write_csv(&answer(), &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "author,n\nab,12\n,0.5\n");
    }

    #[test]
    fn the_table_is_aligned() {
        let mut out = Vec::new();
        write_table(&answer(), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "author | n\n-------+----\nab     | 12\nNULL   | 0.5\n(2 rows)\n"
        );
    }
}

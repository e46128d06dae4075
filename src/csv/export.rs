//! Writing entries as CSV: the header, then one record per entry, `\n`-terminated, fields
//! quoted only where CSV requires it.

use std::io::{self, Write};

use crate::csv::COLUMNS;
use crate::entry::Entry;
use crate::hash::Hash;

/// Writes an export. Rows must be handed over in export order (author bytes, then seq):
/// the writer does not sort, the store iterates in that order.
pub struct CsvWriter<W: Write> {
    inner: ::csv::Writer<W>,
}

impl<W: Write> CsvWriter<W> {
    /// Starts an export: writes the header record.
    pub fn new(w: W) -> io::Result<CsvWriter<W>> {
        let mut inner = ::csv::WriterBuilder::new()
            .has_headers(false)
            .terminator(::csv::Terminator::Any(b'\n'))
            .quote_style(::csv::QuoteStyle::Necessary)
            .from_writer(w);
        inner.write_record(COLUMNS)?;
        Ok(CsvWriter { inner })
    }

    /// Continues an export begun by [`CsvWriter::new`] on another writer: rows only, no
    /// header (an export produced in chunks).
    pub fn continuing(w: W) -> CsvWriter<W> {
        let inner = ::csv::WriterBuilder::new()
            .has_headers(false)
            .terminator(::csv::Terminator::Any(b'\n'))
            .quote_style(::csv::QuoteStyle::Necessary)
            .from_writer(w);
        CsvWriter { inner }
    }

    /// Writes one entry with its hash.
    pub fn write_entry(&mut self, entry: &Entry, hash: &Hash) -> io::Result<()> {
        let prev = entry.prev.map(|p| p.to_hex()).unwrap_or_default();
        self.inner.write_record([
            entry.author.to_hex().as_str(),
            entry.seq.to_string().as_str(),
            entry.timestamp.to_string().as_str(),
            prev.as_str(),
            entry.value.to_string().as_str(),
            entry.data.as_str(),
            hash.to_hex().as_str(),
            entry.signature.to_hex().as_str(),
        ])?;
        Ok(())
    }

    /// Flushes and hands back the writer.
    pub fn finish(self) -> io::Result<W> {
        self.inner
            .into_inner()
            .map_err(|e| io::Error::new(e.error().kind(), e.error().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::UnsignedEntry;
    use crate::identity::{Author, Signature};

    fn entry(seq: u64, prev: Option<Hash>, value: i64, data: &str) -> (Entry, Hash) {
        let unsigned = UnsignedEntry {
            author: Author([0xab; 32]),
            seq,
            timestamp: 1_700_000_000_000 + seq,
            prev,
            value,
            data: data.into(),
        };
        let hash = unsigned.hash();
        (unsigned.with_signature(Signature([0xcd; 64])), hash)
    }

    #[test]
    fn golden_export() {
        let (a, ha) = entry(1, None, -5, "");
        let (b, hb) = entry(2, Some(ha), i64::MAX, "say \"hi\", twice\nok");
        let (c, hc) = entry(3, Some(hb), 0, "plain text");
        let mut w = CsvWriter::new(Vec::new()).unwrap();
        for (e, h) in [(&a, &ha), (&b, &hb), (&c, &hc)] {
            w.write_entry(e, h).unwrap();
        }
        let out = String::from_utf8(w.finish().unwrap()).unwrap();
        let author = "ab".repeat(32);
        let sig = "cd".repeat(64);
        let expected = format!(
            "author,seq,timestamp,prev,value,data,hash,signature\n\
             {author},1,1700000000001,,-5,,{ha},{sig}\n\
             {author},2,1700000000002,{ha},9223372036854775807,\"say \"\"hi\"\", twice\nok\",{hb},{sig}\n\
             {author},3,1700000000003,{hb},0,plain text,{hc},{sig}\n"
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn empty_export_is_the_header() {
        let out = CsvWriter::new(Vec::new()).unwrap().finish().unwrap();
        assert_eq!(
            out,
            b"author,seq,timestamp,prev,value,data,hash,signature\n"
        );
    }
}

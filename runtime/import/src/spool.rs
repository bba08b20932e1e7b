//! Checked rows waiting for the write: a temporary file, so an import of any size holds one
//! row in memory and the destination's transaction starts only once every row is checked.
//!
//! Each record is a length-prefixed JSON header (the row without its component) followed by
//! the length-prefixed component bytes.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use qtm_store::components::Encoded;
use qtm_store::imports::ImportRow;
use qtm_store::{StoreError, StoreResult};

/// A row without its component bytes.
#[derive(Serialize, Deserialize)]
struct Header {
    key: String,
    name: String,
    description: String,
    kind: String,
    content_sha256: String,
    component_sha256: String,
    contract_version: String,
    describe: Value,
    params: Value,
    symbols: Vec<String>,
    /// The stored form of the component that follows, or none (an earlier row's).
    encoding: Option<String>,
    dictionary: Option<String>,
    component_size: usize,
}

/// The spool file and how many rows it holds.
pub(crate) struct Spool {
    file: BufWriter<File>,
    rows: u64,
}

impl Spool {
    /// An empty spool (an anonymous temporary file, gone when dropped).
    pub fn new() -> std::io::Result<Spool> {
        Ok(Spool {
            file: BufWriter::new(tempfile::tempfile()?),
            rows: 0,
        })
    }

    /// Whether no row was pushed.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Append a row.
    pub fn push(&mut self, row: &ImportRow) -> std::io::Result<()> {
        let header = serde_json::to_vec(&Header {
            key: row.key.clone(),
            name: row.name.clone(),
            description: row.description.clone(),
            kind: row.kind.clone(),
            content_sha256: row.content_sha256.clone(),
            component_sha256: row.component_sha256.clone(),
            contract_version: row.contract_version.clone(),
            describe: row.describe.clone(),
            params: row.params.clone(),
            symbols: row.symbols.clone(),
            encoding: row.component.as_ref().map(|c| c.encoding.clone()),
            dictionary: row.component.as_ref().and_then(|c| c.dictionary.clone()),
            component_size: row.component_size,
        })?;
        self.file.write_all(&(header.len() as u64).to_le_bytes())?;
        self.file.write_all(&header)?;
        let bytes = row.component.as_ref().map_or(&[][..], |c| &c.bytes);
        self.file.write_all(&(bytes.len() as u64).to_le_bytes())?;
        self.file.write_all(bytes)?;
        self.rows += 1;
        Ok(())
    }

    /// Read the rows back, in order.
    pub fn rows(self) -> std::io::Result<impl Iterator<Item = StoreResult<ImportRow>>> {
        let mut file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        let mut reader = BufReader::new(file);
        let mut left = self.rows;
        Ok(std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            left -= 1;
            Some(read_row(&mut reader).map_err(|e| {
                StoreError::Conflict(format!("reading the spool of checked rows: {e}"))
            }))
        }))
    }
}

fn read_len(r: &mut impl Read) -> std::io::Result<usize> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    usize::try_from(u64::from_le_bytes(b))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn read_row(r: &mut impl Read) -> std::io::Result<ImportRow> {
    let mut header = vec![0; read_len(r)?];
    r.read_exact(&mut header)?;
    let h: Header = serde_json::from_slice(&header)?;
    let mut bytes = vec![0; read_len(r)?];
    r.read_exact(&mut bytes)?;
    let component = h.encoding.map(|encoding| Encoded {
        encoding,
        dictionary: h.dictionary,
        bytes,
        raw_len: h.component_size,
    });
    Ok(ImportRow {
        key: h.key,
        name: h.name,
        description: h.description,
        kind: h.kind,
        content_sha256: h.content_sha256,
        component_sha256: h.component_sha256,
        contract_version: h.contract_version,
        describe: h.describe,
        component,
        component_size: h.component_size,
        params: h.params,
        symbols: h.symbols,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_come_back_as_they_went_in() {
        let row = |k: &str, n: usize| ImportRow {
            key: k.into(),
            name: k.into(),
            description: String::new(),
            kind: "rules".into(),
            content_sha256: "c".into(),
            component_sha256: "s".into(),
            contract_version: "qtm:strategy@0.2.0".into(),
            describe: json!({"name": k}),
            component: (n > 0).then(|| Encoded {
                encoding: "raw".into(),
                dictionary: None,
                bytes: vec![7; n],
                raw_len: n,
            }),
            component_size: n.max(5),
            params: json!({"fast": 3}),
            symbols: vec!["SPY".into()],
        };
        let mut s = Spool::new().unwrap();
        s.push(&row("a", 10)).unwrap();
        s.push(&row("b", 100_000)).unwrap();
        s.push(&row("c", 0)).unwrap();
        let back: Vec<ImportRow> = s.rows().unwrap().map(Result::unwrap).collect();
        assert_eq!(back.len(), 3);
        let len = |r: &ImportRow| r.component.as_ref().map(|c| c.bytes.len());
        assert_eq!((back[0].key.as_str(), len(&back[0])), ("a", Some(10)));
        assert_eq!((back[1].key.as_str(), len(&back[1])), ("b", Some(100_000)));
        assert_eq!(back[1].params, json!({"fast": 3}));
        // A row whose component an earlier row carries: no bytes, its size kept.
        assert_eq!((len(&back[2]), back[2].component_size), (None, 5));
    }
}

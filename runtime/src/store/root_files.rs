//! The two files of the root directory: `server.dat`, one `ServerInfo` record rewritten
//! in place (STORES §1.4), and `clients.dat`, a log of client additions and deletions
//! written without buffering and compacted when mostly obsolete (STORES §1.5).

use std::collections::BTreeMap;
use std::time::Duration;

use stan_core::log::Level;
use stan_core::streaming::pb::{encode, ClientInfo, ServerInfo};

use super::env::{os_error, reason, Shared};
use super::fs::FsFile;
use super::proto;
use super::record::{
    bad_record, next_record, open_versioned, push_record, q, Appender, Rec, SeqReader,
    FILE_VERSION, HEADER_LEN,
};
use super::tempfile;

const SERVER_FILE: &str = "server.dat";
const CLIENTS_FILE: &str = "clients.dat";

const REC_ADD_CLIENT: u8 = 1;
const REC_DEL_CLIENT: u8 = 2;

#[derive(Default)]
pub(crate) struct ServerFile {
    file: Option<Box<dyn FsFile>>,
}

impl ServerFile {
    fn file(&mut self, sh: &Shared) -> Result<&mut Box<dyn FsFile>, String> {
        if self.file.is_none() {
            let path = sh.root.join(SERVER_FILE);
            self.file = Some(open_versioned(&*sh.fs, &path)?);
        }
        Ok(self.file.as_mut().expect("just opened"))
    }

    /// The stored `ServerInfo`; `None` when the file holds only its header.
    pub fn recover(&mut self, sh: &Shared) -> Result<Option<ServerInfo>, String> {
        let path = sh.root.join(SERVER_FILE);
        let file = open_versioned(&*sh.fs, &path)
            .map_err(|e| format!("unable to recover server file \"{SERVER_FILE}\": {e}"))?;
        let failed = |e: String| format!("unable to recover server file {}: {e}", q(&path));
        let corrupted = |e: String| {
            sh.log(
                Level::Error,
                &format!("Server file {} corrupted: {e}", q(&path)),
            );
            sh.log(
                Level::Error,
                "Follow instructions in documentation in order to recover from this",
            );
            failed(e)
        };
        let info = {
            let mut r = SeqReader::new(&*file, 4).map_err(|e| failed(reason(&e)))?;
            match next_record(&mut r, false, sh.verify_crc()) {
                Ok(Rec::Eof) => None,
                Ok(Rec::Zero) => return Err(corrupted("end of file padded with zeros".into())),
                Err(e) => return Err(corrupted(e.to_string())),
                Ok(Rec::Record { payload, .. }) => {
                    let expected = 4 + HEADER_LEN as u64 + payload.len() as u64;
                    let actual = file.size().map_err(|e| failed(reason(&e)))?;
                    if actual != expected {
                        return Err(failed(format!(
                            "incorrect file size, expected {expected} bytes, got {actual} bytes"
                        )));
                    }
                    Some(proto::decode_server_info(payload).map_err(|e| failed(e.0))?)
                }
            }
        };
        self.file = Some(file);
        Ok(info)
    }

    /// Replaces the stored `ServerInfo`: the one record follows the version header.
    pub fn init(&mut self, sh: &Shared, info: &ServerInfo) -> Result<(), String> {
        let mut rec = Vec::new();
        push_record(&mut rec, &sh.crc, 0, |out| {
            out.extend_from_slice(&encode(info))
        })?;
        let path = sh.root.join(SERVER_FILE);
        let file = self.file(sh)?;
        file.truncate(4)
            .and_then(|()| file.append(&rec))
            .map_err(|e| os_error("write", &path, &e))
    }

    pub fn close(&mut self) {
        self.file = None;
    }
}

#[derive(Default)]
pub(crate) struct ClientsFile {
    out: Option<Appender>,
    clients: BTreeMap<String, ClientInfo>,
    del_recs: u64,
    /// Bytes of client records, header excluded.
    file_size: u64,
    compacted_at: Option<Duration>,
    scratch: Vec<u8>,
}

impl ClientsFile {
    fn out(&mut self, sh: &Shared) -> Result<&mut Appender, String> {
        if self.out.is_none() {
            let path = sh.root.join(CLIENTS_FILE);
            let file = open_versioned(&*sh.fs, &path)?;
            let len = file.size().map_err(|e| os_error("stat", &path, &e))?;
            self.out = Some(Appender::new(path, file, len, 0, 0));
        }
        Ok(self.out.as_mut().expect("just opened"))
    }

    /// Opens `clients.dat` and, when `replay`, rebuilds the client list from it.
    pub fn recover(&mut self, sh: &Shared, replay: bool) -> Result<(), String> {
        let path = sh.root.join(CLIENTS_FILE);
        let mut file = open_versioned(&*sh.fs, &path)
            .map_err(|e| format!("unable to recover client file \"{CLIENTS_FILE}\": {e}"))?;
        let failed = |e: String| format!("unable to recover client file {}: {e}", q(&path));
        self.clients.clear();
        self.del_recs = 0;
        self.file_size = 0;
        if replay {
            let mut cut = None;
            {
                let mut r = SeqReader::new(&*file, 4).map_err(|e| failed(reason(&e)))?;
                loop {
                    let offset = r.offset();
                    match next_record(&mut r, true, sh.verify_crc()) {
                        Ok(Rec::Eof) => break,
                        Ok(Rec::Zero) => {
                            cut = Some((offset, None));
                            break;
                        }
                        Err(e) => {
                            cut = Some((offset, Some(e)));
                            break;
                        }
                        Ok(Rec::Record { rtype, payload }) => {
                            self.file_size += (HEADER_LEN + payload.len()) as u64;
                            self.apply(rtype, payload).map_err(failed)?;
                        }
                    }
                }
            }
            match cut {
                None => {}
                Some((offset, None)) => file
                    .truncate(offset)
                    .map_err(|e| failed(os_error("truncate", &path, &e)))?,
                Some((offset, Some(e))) => {
                    bad_record(sh, &mut *file, &path, offset, true, &e).map_err(failed)?
                }
            }
        }
        let len = file
            .size()
            .map_err(|e| failed(os_error("stat", &path, &e)))?;
        self.out = Some(Appender::new(path, file, len, 0, 0));
        Ok(())
    }

    /// Add replaces a client with the same ID; delete removes it.
    fn apply(&mut self, rtype: u8, payload: &[u8]) -> Result<(), String> {
        match rtype {
            REC_ADD_CLIENT => {
                let c = proto::decode_client_info(payload).map_err(|e| e.0)?;
                self.clients.insert(c.id.clone(), c);
            }
            REC_DEL_CLIENT => {
                let d = proto::decode_client_delete(payload).map_err(|e| e.0)?;
                self.clients.remove(&d.id);
                self.del_recs += 1;
            }
            t => return Err(format!("invalid client record type: {t}")),
        }
        Ok(())
    }

    /// The live clients, by ID.
    pub fn list(&self) -> Vec<ClientInfo> {
        self.clients.values().cloned().collect()
    }

    pub fn add(&mut self, sh: &Shared, info: &ClientInfo) -> Result<(), String> {
        self.write(sh, REC_ADD_CLIENT, |out| {
            out.extend_from_slice(&encode(info))
        })?;
        self.clients.insert(info.id.clone(), info.clone());
        Ok(())
    }

    pub fn delete(&mut self, sh: &Shared, id: &str) -> Result<(), String> {
        let written = self.write(sh, REC_DEL_CLIENT, |out| {
            proto::encode_client_delete(out, id)
        });
        self.clients.remove(id);
        self.del_recs += 1;
        // A successful compaction replaces the file, failed write included.
        if self.should_compact(sh) {
            return self.compact(sh);
        }
        written
    }

    fn write(
        &mut self,
        sh: &Shared,
        rtype: u8,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), String> {
        let mut rec = std::mem::take(&mut self.scratch);
        rec.clear();
        let r = push_record(&mut rec, &sh.crc, rtype, encode)
            .and_then(|_| self.out(sh)?.write(&*sh.fs, &rec));
        if r.is_ok() {
            self.file_size += rec.len() as u64;
        }
        self.scratch = rec;
        r
    }

    fn should_compact(&self, sh: &Shared) -> bool {
        let o = &sh.opts;
        if !o.compact_enabled {
            return false;
        }
        if o.compact_min_size > 0 && (self.file_size as i64) < o.compact_min_size {
            return false;
        }
        let total = self.del_recs + self.clients.len() as u64;
        if total == 0 || ((self.del_recs * 100 / total) as i64) < o.compact_frag {
            return false;
        }
        match self.compacted_at {
            None => true,
            Some(at) => sh.now().saturating_sub(at).as_secs() as i64 >= o.compact_interval,
        }
    }

    /// Rewrites the live clients to a temporary file and renames it over
    /// `clients.dat`.
    fn compact(&mut self, sh: &Shared) -> Result<(), String> {
        let mut data = FILE_VERSION.to_le_bytes().to_vec();
        for c in self.clients.values() {
            push_record(&mut data, &sh.crc, REC_ADD_CLIENT, |out| {
                out.extend_from_slice(&encode(c))
            })?;
        }
        let path = sh.root.join(CLIENTS_FILE);
        let file = tempfile::replace(sh, CLIENTS_FILE, &data, &path)?;
        self.out(sh)?.reset(file, data.len() as u64);
        self.del_recs = 0;
        self.file_size = (data.len() - 4) as u64;
        self.compacted_at = Some(sh.now());
        Ok(())
    }

    pub fn close(&mut self) {
        self.out = None;
    }
}

//! A virtual smart card for pcscd's `vsmartcard-vpcd` reader driver: the test is the card.
//!
//! vpcd listens on TCP (reader "Virtual PCD 00 00" on 35963, "Virtual PCD 00 01" on 35964
//! with the config in `scripts/test.sh`); whoever connects is the card in that reader.
//! Each message is a 2-byte big-endian length and a payload. A 1-byte payload is control:
//! 0 power off, 1 power on, 2 reset, 4 "send your ATR" (answered with the ATR). Any other
//! payload is a C-APDU, answered with the R-APDU. Closing the socket removes the card
//! (pcscd notices in about 0.4 s).
//!
//! ```no_run
//! use pki_tests::vcard::VirtualCard;
//! let card = VirtualCard::insert(35963, vec![0x3B, 0x80, 0x80, 0x01, 0x01], |apdu| {
//!     if apdu.starts_with(&[0x00, 0xA4]) { vec![0x90, 0x00] } else { vec![0x6D, 0x00] }
//! });
//! // ... talk to it through PC/SC ...
//! card.remove();
//! ```
//!
//! A responder that returns an empty reply pulls the card out in the middle of that
//! command (the connection is closed without an answer): removal mid-transaction.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long [`VirtualCard::insert`] retries connecting (pcscd may be starting).
const CONNECT_FOR: Duration = Duration::from_secs(10);

/// A card in a vpcd reader, answered by a thread until [`VirtualCard::remove`] (or drop).
pub struct VirtualCard {
    stream: TcpStream,
    thread: Option<JoinHandle<()>>,
    apdus: Arc<Mutex<Vec<Vec<u8>>>>,
    connected: Arc<AtomicBool>,
}

impl VirtualCard {
    /// Connect to vpcd on 127.0.0.1:`port` (inserting the card) and answer on a thread:
    /// control messages by themselves (the ATR is `atr`), C-APDUs with `responder`. An
    /// empty reply from `responder` closes the connection instead (the card is pulled out
    /// mid-command). Panics if vpcd is not reachable within 10 s (pcscd with the vpcd
    /// driver must run: `scripts/test.sh` starts one).
    pub fn insert(
        port: u16,
        atr: Vec<u8>,
        responder: impl FnMut(&[u8]) -> Vec<u8> + Send + 'static,
    ) -> VirtualCard {
        let deadline = Instant::now() + CONNECT_FOR;
        let stream = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!(
                    "virtual card: cannot connect to vpcd on 127.0.0.1:{port}: {e} (is pcscd \
                     running with the vsmartcard-vpcd driver? scripts/test.sh starts one)"
                ),
            }
        };
        let _ = stream.set_nodelay(true);
        let apdus = Arc::new(Mutex::new(Vec::new()));
        let connected = Arc::new(AtomicBool::new(true));
        let reader = stream.try_clone().expect("clone the vpcd socket");
        let (log, flag) = (apdus.clone(), connected.clone());
        let thread = std::thread::Builder::new()
            .name(format!("vcard-{port}"))
            .spawn(move || {
                serve(reader, atr, responder, &log);
                flag.store(false, Ordering::SeqCst);
            })
            .expect("spawn the virtual card thread");
        VirtualCard {
            stream,
            thread: Some(thread),
            apdus,
            connected,
        }
    }

    /// The C-APDUs received so far, in order.
    pub fn apdus(&self) -> Vec<Vec<u8>> {
        self.apdus.lock().unwrap().clone()
    }

    /// Whether the connection is still open (false after the responder pulled the card
    /// out or vpcd closed it).
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Pull the card out: close the connection and wait for the thread to end.
    pub fn remove(mut self) {
        self.close();
    }

    fn close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for VirtualCard {
    fn drop(&mut self) {
        self.close();
    }
}

fn serve(
    mut s: TcpStream,
    atr: Vec<u8>,
    mut responder: impl FnMut(&[u8]) -> Vec<u8>,
    log: &Mutex<Vec<Vec<u8>>>,
) {
    loop {
        let mut len = [0u8; 2];
        if s.read_exact(&mut len).is_err() {
            return;
        }
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        if s.read_exact(&mut msg).is_err() {
            return;
        }
        let reply = match msg.as_slice() {
            [0] | [1] | [2] => continue, // power off / on / reset: no answer
            [4] => atr.clone(),
            [_] => continue,
            apdu => {
                log.lock().unwrap().push(apdu.to_vec());
                let r = responder(apdu);
                if r.is_empty() {
                    let _ = s.shutdown(Shutdown::Both);
                    return;
                }
                r
            }
        };
        let mut out = Vec::with_capacity(reply.len() + 2);
        out.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        out.extend_from_slice(&reply);
        if s.write_all(&out).is_err() {
            return;
        }
    }
}

//! Breakers and bulkheads keyed per authority (scheme, host, port), in a bounded map.
//!
//! The map is read-mostly: a request looks its authority up once, before its first attempt,
//! under a shared `RwLock` read (no allocation: the key is hashed from the URL's parts and
//! compared field by field) and clones that authority's service (a few reference counts); the
//! retry then replays on that service, since every attempt goes to the same authority. A new authority takes the write
//! lock once. Lock-free is not needed here: the read lock is held for a lookup only, never
//! across an await, and a `DashMap`-style sharded map would buy little for the handful of
//! upstreams a client talks to while adding a dependency. Bounds: at most `max_keys` entries;
//! entries idle for `idle_timeout` are swept on insert (at most once per `idle_timeout`, and
//! always when the map is full); a full map with nothing idle drops its least recently used
//! entry (its breaker state is lost; a sick host re-trips after `volume_threshold` calls).
//! The key is foldhash's, seeded from the operating system's randomness per client: a SipHash
//! of the host costs as much as the rest of the lookup, and authorities that collide anyway
//! (foldhash resists only simple attacks) share a bucket within the map's bound.
//! Metric labels are bounded too: the first `max_labels` authorities get their own breaker and
//! bulkhead name, the rest share `{name}/other`.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerService};
use crate::clock::Clock;
use crate::deadline::PropagateDeadline;
use crate::http::{HttpBreakerClassifier, HttpLayerBuilder};
use crate::stack::{
    BoxErrors, IgnoreBulkheadFull, OptionalBulkhead, OptionalBulkheadLayer, OptionalTimeout,
};
use crate::ConfigError;

/// Default bound on the authorities a client keeps a breaker for: 1024.
pub const DEFAULT_MAX_AUTHORITIES: usize = 1024;
/// Default idle time after which an authority's breaker and bulkhead are dropped: 5 min
/// (well past the preset's 30 s window and 5 s break: an idle entry holds nothing worth keeping).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default number of authorities named in metric labels; the rest are `{name}/other`: 64.
pub const DEFAULT_MAX_LABELED_AUTHORITIES: usize = 64;

pub(crate) type Attempt = OptionalTimeout<BoxErrors<PropagateDeadline<reqwest::Client>>>;
type BulkheadPart = OptionalBulkhead<Attempt>;
pub(crate) type PerKey =
    CircuitBreakerService<BulkheadPart, IgnoreBulkheadFull<HttpBreakerClassifier>>;

/// One authority's breaker and service.
pub(crate) struct Entry {
    /// `scheme://host:port`, for error messages.
    authority: Arc<str>,
    scheme: Box<str>,
    host: Box<str>,
    port: u16,
    service: PerKey,
    breaker: CircuitBreaker,
    /// Seconds on the map's clock when last used.
    last_used: AtomicU64,
}

impl Entry {
    fn is(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.port == port && *self.host == *host && *self.scheme == *scheme
    }

    /// Whether `url` has this entry's authority.
    pub(crate) fn serves(&self, url: &reqwest::Url) -> bool {
        let (scheme, host, port) = Keys::parts(url);
        self.is(scheme, host, port)
    }

    /// The authority's service, for one request.
    pub(crate) fn service(&self) -> PerKey {
        self.service.clone()
    }

    /// `scheme://host:port`.
    pub(crate) fn authority(&self) -> &Arc<str> {
        &self.authority
    }

    /// The authority's breaker.
    pub(crate) fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

/// The authority of `url` as `Url::parse` would read it — scheme, host, port (the scheme's
/// default when none is written) — read without parsing the rest, for the plain forms only:
/// `http` or `https`, a host of lower-case ASCII letters, digits, `-` and `.` (a dotted-quad
/// IPv4 address in its canonical form, if it ends in a number), an optional decimal port.
/// `None` for anything else (user info, IPv6, upper case, percent-encoding, IDNA, other
/// numeric hosts), which only the full parse reads right.
pub(crate) fn plain_authority(text: &str) -> Option<(&'static str, &str, u16)> {
    let url = text.as_bytes();
    let (scheme, start, default) = if url.starts_with(b"http://") {
        ("http", 7, 80)
    } else if url.starts_with(b"https://") {
        ("https", 8, 443)
    } else {
        return None;
    };
    // One pass over the host: non-empty labels of `[a-z0-9-]`, up to the port or the path.
    let mut i = start;
    let mut label = start;
    loop {
        match url.get(i).map_or(END, |&b| BYTE_CLASS[usize::from(b)]) {
            HOST => {}
            DOT if i > label => label = i + 1,
            END => break,
            _ => return None,
        }
        i += 1;
    }
    if i == label {
        return None;
    }
    let host = &text[start..i];
    // A host whose last label starts with a digit may be an IPv4 address to `Url`, which
    // rewrites its other forms (`127.1`, `0x7f.0.0.1`, `010.0.0.1`) to the dotted quad.
    if url[label].is_ascii_digit() && !is_dotted_quad(host.as_bytes()) {
        return None;
    }
    let mut port = default;
    if url.get(i) == Some(&b':') {
        i += 1;
        let digits = i;
        let mut n: u32 = 0;
        while let Some(&b) = url.get(i).filter(|b| b.is_ascii_digit()) {
            n = n * 10 + u32::from(b - b'0');
            if n > u32::from(u16::MAX) {
                return None;
            }
            i += 1;
        }
        if i > digits {
            port = n as u16;
        }
    }
    match url.get(i) {
        None | Some(b'/' | b'?' | b'#') => Some((scheme, host, port)),
        Some(_) => None,
    }
}

/// What a byte is to [`plain_authority`]'s host: part of a label, a dot, the host's end (the
/// port or the path after it), or anything else.
const BYTE_CLASS: [u8; 256] = {
    let mut class = [OTHER; 256];
    let mut b = 0;
    while b < 256 {
        class[b] = match b as u8 {
            b'a'..=b'z' | b'0'..=b'9' | b'-' => HOST,
            b'.' => DOT,
            b':' | b'/' | b'?' | b'#' => END,
            _ => OTHER,
        };
        b += 1;
    }
    class
};
const HOST: u8 = 0;
const DOT: u8 = 1;
const END: u8 = 2;
const OTHER: u8 = 3;

/// Whether `host` is four decimal numbers of 0–255 without leading zeros, joined by dots.
fn is_dotted_quad(host: &[u8]) -> bool {
    let mut i = 0;
    for part in 0..4 {
        if part > 0 {
            if host.get(i) != Some(&b'.') {
                return false;
            }
            i += 1;
        }
        let digits = i;
        let mut value = 0u32;
        while let Some(&b) = host.get(i).filter(|b| b.is_ascii_digit() && i - digits < 3) {
            value = value * 10 + u32::from(b - b'0');
            i += 1;
        }
        if i == digits || value > 255 || (i - digits > 1 && host[digits] == b'0') {
            return false;
        }
    }
    i == host.len()
}

/// A random number from the operating system's randomness (through std's SipHash keys).
fn random_u64() -> u64 {
    RandomState::new().build_hasher().finish()
}

/// Hashes a map key that already is a seeded hash: as it is.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is called for a `u64` key; anything else folds in all the same.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

struct Map {
    /// By [`Keys::hash`] (seeded, so not hashed again); authorities that share a hash are
    /// told apart in their `Vec`.
    entries: HashMap<u64, Vec<Arc<Entry>>, BuildHasherDefault<KeyHasher>>,
    len: usize,
    labels: HashSet<Box<str>>,
    last_sweep: u64,
}

pub(crate) struct Keys {
    map: RwLock<Map>,
    /// Seeds of the authority hash, random per client.
    seed: u64,
    shared_seed: foldhash::SharedSeed,
    clock: Clock,
    preset: HttpLayerBuilder,
    attempt: Attempt,
    max_keys: usize,
    max_labels: usize,
    idle_secs: u64,
    registry: Option<crate::admin::BreakerRegistry>,
}

impl Keys {
    pub(crate) fn new(
        preset: HttpLayerBuilder,
        attempt: Attempt,
        max_keys: usize,
        max_labels: usize,
        idle_timeout: Duration,
    ) -> Result<Self, ConfigError> {
        if max_keys == 0 {
            return Err(ConfigError::new(
                "max_authorities",
                "0 is outside [1, usize::MAX]",
            ));
        }
        if idle_timeout.is_zero() {
            return Err(ConfigError::new("idle_timeout", "0 is outside (0, ∞)"));
        }
        Ok(Keys {
            map: RwLock::new(Map {
                entries: HashMap::default(),
                len: 0,
                labels: HashSet::new(),
                last_sweep: 0,
            }),
            seed: random_u64(),
            shared_seed: foldhash::SharedSeed::from_u64(random_u64()),
            clock: Clock::new(),
            preset,
            attempt,
            max_keys,
            max_labels,
            idle_secs: idle_timeout.as_secs().max(1),
            registry: None,
        })
    }

    /// Lists each new authority's breaker in `registry`.
    pub(crate) fn with_registry(mut self, registry: Option<crate::admin::BreakerRegistry>) -> Self {
        self.registry = registry;
        self
    }

    fn now_secs(&self) -> u64 {
        self.clock.now() / 1_000_000_000
    }

    /// The map key of an authority: host and port (an entry's scheme is compared on lookup).
    fn hash(&self, host: &str, port: u16) -> u64 {
        let mut hasher = foldhash::fast::FoldHasher::with_seed(self.seed, &self.shared_seed);
        hasher.write(host.as_bytes());
        hasher.write_u16(port);
        hasher.finish()
    }

    /// The URL's authority as (scheme, host, port); a URL without a host keys as "".
    fn parts(url: &reqwest::Url) -> (&str, &str, u16) {
        (
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0),
        )
    }

    fn find(&self, url: &reqwest::Url) -> Option<Arc<Entry>> {
        let (scheme, host, port) = Keys::parts(url);
        self.find_parts(scheme, host, port)
    }

    fn find_parts(&self, scheme: &str, host: &str, port: u16) -> Option<Arc<Entry>> {
        let hash = self.hash(host, port);
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.entries
            .get(&hash)?
            .iter()
            .find(|e| e.is(scheme, host, port))
            .cloned()
    }

    /// This authority's entry, created on first use.
    pub(crate) fn entry(&self, url: &reqwest::Url) -> Arc<Entry> {
        let now = self.now_secs();
        let entry = match self.find(url) {
            Some(entry) => entry,
            None => self.insert(url, now),
        };
        Keys::touch(&entry, now);
        entry
    }

    /// The entry of an authority read from a URL in the [plain form](plain_authority), if the
    /// map holds it.
    pub(crate) fn find_unparsed(&self, scheme: &str, host: &str, port: u16) -> Option<Arc<Entry>> {
        let entry = self.find_parts(scheme, host, port)?;
        Keys::touch(&entry, self.now_secs());
        Some(entry)
    }

    fn touch(entry: &Entry, now: u64) {
        // Relaxed: an approximate recency for eviction; nothing is published through it. The
        // load first keeps the line shared while the second does not change.
        if entry.last_used.load(Ordering::Relaxed) != now {
            entry.last_used.store(now, Ordering::Relaxed);
        }
    }

    /// This authority's breaker, if the map holds it.
    pub(crate) fn breaker(&self, url: &reqwest::Url) -> Option<CircuitBreaker> {
        self.find(url).map(|e| e.breaker.clone())
    }

    pub(crate) fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len
    }

    #[cold]
    fn insert(&self, url: &reqwest::Url, now: u64) -> Arc<Entry> {
        let (scheme, host, port) = Keys::parts(url);
        let hash = self.hash(host, port);
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        // Another caller may have inserted it between the read and the write lock.
        if let Some(e) = map
            .entries
            .get(&hash)
            .and_then(|v| v.iter().find(|e| e.is(scheme, host, port)))
        {
            return e.clone();
        }
        if map.len >= self.max_keys || now.saturating_sub(map.last_sweep) >= self.idle_secs {
            self.sweep(&mut map, now);
        }
        let authority = format!("{scheme}://{host}:{port}");
        let name = &self.preset.name;
        let label = if map.labels.contains(authority.as_str()) || map.labels.len() < self.max_labels
        {
            map.labels.insert(authority.clone().into_boxed_str());
            format!("{name}/{authority}")
        } else {
            format!("{name}/other")
        };
        let authority: Arc<str> = authority.into();
        let entry = Arc::new(self.make_entry(scheme, host, port, &label, authority, now));
        map.entries.entry(hash).or_default().push(entry.clone());
        map.len += 1;
        entry
    }

    fn make_entry(
        &self,
        scheme: &str,
        host: &str,
        port: u16,
        label: &str,
        authority: Arc<str>,
        now: u64,
    ) -> Entry {
        use tower_layer::Layer;
        // NOTE: `HttpLayerBuilder::validate` ran in `ClientBuilder::build`, so these cannot fail.
        let breaker = self
            .preset
            .breaker
            .clone()
            .name(label)
            .build()
            .unwrap_or_else(|_| unreachable!("validated by ClientBuilder::build"));
        if let Some(registry) = &self.registry {
            registry.register(&breaker);
        }
        let bulkhead = self
            .preset
            .bulkhead_layer(label)
            .unwrap_or_else(|_| unreachable!("validated by ClientBuilder::build"));
        let service =
            tower_layer::Layer::layer(&OptionalBulkheadLayer(bulkhead), self.attempt.clone());
        let service = breaker
            .layer()
            .with_classifier(IgnoreBulkheadFull(self.preset.breaker_classifier))
            .layer(service);
        Entry {
            authority,
            scheme: scheme.into(),
            host: host.into(),
            port,
            service,
            breaker,
            last_used: AtomicU64::new(now),
        }
    }

    /// Drops idle entries; if the map is still full, its least recently used one.
    fn sweep(&self, map: &mut Map, now: u64) {
        map.last_sweep = now;
        let idle =
            |e: &Entry| now.saturating_sub(e.last_used.load(Ordering::Relaxed)) >= self.idle_secs;
        let mut removed = 0;
        map.entries.retain(|_, v| {
            let before = v.len();
            v.retain(|e| !idle(e));
            removed += before - v.len();
            !v.is_empty()
        });
        map.len -= removed;
        if map.len >= self.max_keys {
            let lru = map
                .entries
                .iter()
                .flat_map(|(h, v)| v.iter().enumerate().map(move |(i, e)| (*h, i, e)))
                .min_by_key(|(_, _, e)| e.last_used.load(Ordering::Relaxed))
                .map(|(h, i, _)| (h, i));
            if let Some((h, i)) = lru {
                if let Some(v) = map.entries.get_mut(&h) {
                    v.swap_remove(i);
                    if v.is_empty() {
                        map.entries.remove(&h);
                    }
                }
                map.len -= 1;
            }
        }
    }
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use super::*;
    use crate::timeout::TimeoutLayer;

    fn keys(max: usize, labels: usize, idle: Duration) -> Keys {
        let propagate = crate::deadline::PropagateDeadlineLayer::new(
            crate::deadline::DeadlineHeader::GrpcTimeout,
        );
        let attempt = tower_layer::Layer::layer(
            &crate::stack::OptionalTimeoutLayer(None::<TimeoutLayer>),
            BoxErrors::new(tower_layer::Layer::layer(
                &propagate,
                reqwest::Client::new(),
            )),
        );
        Keys::new(
            crate::http::HttpLayer::builder(),
            attempt,
            max,
            labels,
            idle,
        )
        .unwrap()
    }

    fn url(i: u32) -> reqwest::Url {
        format!("http://host-{i}.test:8080/x").parse().unwrap()
    }

    #[test]
    fn plain_authorities_read_as_the_full_parse_reads_them() {
        let plain = [
            "http://a.test/x",
            "http://a.test",
            "https://a.test:8443?q",
            "http://a.test:80/",
            "http://a.test:080#f",
            "https://a.test:/",
            "http://127.0.0.1:3000/p",
            "http://0.0.0.0/",
            "http://host-1.internal.svc.cluster.local:8080/v1",
            "http://1a.test/",
            "http://10.0.255.1/",
        ];
        for url in plain {
            let parsed: reqwest::Url = url.parse().unwrap();
            assert_eq!(plain_authority(url), Some(Keys::parts(&parsed)), "{url}");
        }
        // Forms the full parse rewrites, or that it alone can read (or refuse): left to it.
        let other = [
            "HTTP://a.test/",
            "http://A.test/",
            "http://user:pw@a.test/",
            "http://user@a.test/",
            "http://[::1]:80/",
            "http://127.1/",
            "http://0x7f.0.0.1/",
            "http://010.0.0.1/",
            "http://1.2.3.256/",
            "http://1.2.3.4.5/",
            "http://1.2.3/",
            "http://1.02.3.4/",
            "http://1.2.3.1000/",
            "http://a..test/",
            "http://a.test./",
            "http://a%2etest/",
            "http://a.test\\x/",
            "http:///a.test/",
            "http:a.test/",
            " http://a.test/",
            "http://a.test:99999/",
            "http://a.test:8o/",
            "http://\u{e9}.test/",
            "ftp://a.test/",
            "http://a_b.test/",
            "http://a.te\tst/",
            "http://a.0x1g/",
        ];
        for url in other {
            assert_eq!(plain_authority(url), None, "{url}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_entry_per_authority_whatever_the_path_or_default_port() {
        let k = keys(10, 10, Duration::from_secs(60));
        let a: reqwest::Url = "http://a.test/one".parse().unwrap();
        let a2: reqwest::Url = "http://a.test:80/two?q".parse().unwrap();
        let a_tls: reqwest::Url = "https://a.test/".parse().unwrap();
        let _ = (k.entry(&a), k.entry(&a2), k.entry(&a_tls));
        assert_eq!(k.len(), 2);
        assert_eq!(k.breaker(&a).unwrap().name(), "http/http://a.test:80");
        assert_eq!(k.breaker(&a_tls).unwrap().name(), "http/https://a.test:443");
    }

    #[tokio::test(start_paused = true)]
    async fn schemes_on_one_host_and_port_and_long_hosts_keep_their_own_entries() {
        // The key hashes host and port only; the scheme must still tell entries apart.
        let k = keys(10, 10, Duration::from_secs(60));
        let plain: reqwest::Url = "http://a.test:8443/".parse().unwrap();
        let tls: reqwest::Url = "https://a.test:8443/".parse().unwrap();
        let long: reqwest::Url = format!("http://{}.test/", "h".repeat(80)).parse().unwrap();
        let _ = (k.entry(&plain), k.entry(&tls), k.entry(&long));
        let _ = (k.entry(&plain), k.entry(&tls), k.entry(&long));
        assert_eq!(k.len(), 3);
        assert_eq!(k.breaker(&tls).unwrap().name(), "http/https://a.test:8443");
        assert!(k.breaker(&long).unwrap().name().ends_with(".test:80"));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_entries_are_swept_and_a_full_map_drops_its_least_recently_used() {
        let k = keys(3, 10, Duration::from_secs(60));
        for i in 0..3 {
            let _ = k.entry(&url(i));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // Full, nothing idle: host-0, the least recently used, makes room.
        let _ = k.entry(&url(1));
        let _ = k.entry(&url(3));
        assert_eq!(k.len(), 3);
        assert!(k.breaker(&url(0)).is_none());
        assert!(k.breaker(&url(1)).is_some());
        // Everything idle past the timeout is swept by the next insert.
        tokio::time::advance(Duration::from_secs(61)).await;
        let _ = k.entry(&url(9));
        assert_eq!(k.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn labels_are_bounded_and_kept_by_returning_authorities() {
        let k = keys(2, 1, Duration::from_secs(60));
        let _ = k.entry(&url(0));
        let _ = k.entry(&url(1));
        assert_eq!(
            k.breaker(&url(0)).unwrap().name(),
            "http/http://host-0.test:8080"
        );
        assert_eq!(k.breaker(&url(1)).unwrap().name(), "http/other");
        // host-0 is evicted, then comes back under its own label.
        let _ = k.entry(&url(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        let _ = k.entry(&url(1));
        let _ = k.entry(&url(2));
        assert!(k.breaker(&url(0)).is_none());
        let _ = k.entry(&url(0));
        assert_eq!(
            k.breaker(&url(0)).unwrap().name(),
            "http/http://host-0.test:8080"
        );
    }
}

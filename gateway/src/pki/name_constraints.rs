//! Name constraints for one certification path: RFC 5280 §4.2.1.10, applied as in
//! §6.1.3 (b)/(c) and §6.1.4 (g).
//!
//! Instead of computing the intersection of permitted subtrees, every constraining CA's
//! permitted set is kept and a name must fall inside each of them (for its own name form).
//! That is the same set as the RFC's running intersection, with no subtree algebra to get
//! wrong; when two CAs permit disjoint subtrees no name of that form can satisfy both, which
//! is what an intersection that became empty means.
//!
//! Everything here is pure and total: no I/O, no panics, and a fixed budget of
//! name × subtree comparisons per path, because a certificate with many names under a CA
//! with many subtrees is a known denial-of-service shape.

use std::net::Ipv4Addr;

use const_oid::ObjectIdentifier;
use der::asn1::Any;
use der::{Tag, Tagged};
use x509_cert::ext::pkix::constraints::name::{GeneralSubtree, NameConstraints};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::name::Name;

/// One certificate of the path, anchor side first (index 0 = issued by the trust anchor, last = end entity).
pub struct NameConstraintsInput<'a> {
    pub subject: &'a Name,
    /// subjectAltName general names; None if the extension is absent.
    pub subject_alt_names: Option<&'a [GeneralName]>,
    /// nameConstraints of this certificate, if present (applies to the certificates after it).
    pub name_constraints: Option<&'a NameConstraints>,
    /// subject == issuer; RFC 5280 6.1.3(b)/(c): a self-issued certificate that is not the last in the path is not checked.
    pub self_issued: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameConstraintsError {
    /// A name of the certificate at `index` (same indexing as the input) falls outside a permitted subtree or inside an excluded one.
    NotPermitted { index: usize },
    /// A constraint of a form we do not implement applies to a name of that form present in a certificate (e.g. x400Address, ediPartyName, otherName, registeredID); closed: treated as a violation.
    Unsupported { index: usize },
    /// The constraint itself is malformed (e.g. an iPAddress constraint that is not 8 or 32 bytes, minimum != 0, maximum present).
    Malformed { index: usize },
    /// Work budget exceeded.
    TooComplex,
}

/// Checks every name of every certificate in `path` against the name constraints of the
/// certificates before it.
pub fn check_path(path: &[NameConstraintsInput<'_>]) -> Result<(), NameConstraintsError> {
    check_path_with_budget(path, MAX_COMPARISONS)
}

/// Far above any legitimate path (a handful of names against a handful of subtrees), far
/// below what makes a handshake noticeably slow.
const MAX_COMPARISONS: usize = 100_000;

/// PKCS #9 emailAddress, which legacy certificates put in the subject instead of an
/// rfc822Name; RFC 5280 §4.2.1.10 says rfc822Name constraints must then apply to it.
const EMAIL_ADDRESS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.1");

fn check_path_with_budget(
    path: &[NameConstraintsInput<'_>],
    max_comparisons: usize,
) -> Result<(), NameConstraintsError> {
    let mut budget = Budget(max_comparisons);
    let mut in_force: Vec<Constraints> = Vec::new();
    let last = path.len().saturating_sub(1);

    for (index, cert) in path.iter().enumerate() {
        let is_last = index == last;

        // Self-issued intermediates are exempt so that a CA can roll over its own key
        // (PKITS 4.13.19); the end entity is checked even when self-issued (4.13.20).
        if !in_force.is_empty() && (is_last || !cert.self_issued) {
            for name in names_of(cert) {
                check_name(&name, &in_force, index, &mut budget)?;
            }
        }

        // An end entity's own constraints would constrain nothing.
        if is_last {
            continue;
        }
        if let Some(nc) = cert.name_constraints {
            let compiled =
                Constraints::compile(nc).ok_or(NameConstraintsError::Malformed { index })?;
            in_force.push(compiled);
        }
    }

    Ok(())
}

fn check_name(
    name: &CertName,
    in_force: &[Constraints],
    index: usize,
    budget: &mut Budget,
) -> Result<(), NameConstraintsError> {
    if let CertName::Unsupported(_) = name {
        let constrained = in_force
            .iter()
            .any(|c| c.permitted.constrains(name) || c.excluded.constrains(name));
        return match constrained {
            true => Err(NameConstraintsError::Unsupported { index }),
            false => Ok(()),
        };
    }

    // Excluded subtrees first: a name inside one is rejected whatever is permitted.
    for c in in_force {
        if c.excluded.contains(name, Side::Excluded, budget)? {
            return Err(NameConstraintsError::NotPermitted { index });
        }
    }
    for c in in_force {
        if c.permitted.constrains(name) && !c.permitted.contains(name, Side::Permitted, budget)? {
            return Err(NameConstraintsError::NotPermitted { index });
        }
    }
    Ok(())
}

struct Budget(usize);

impl Budget {
    fn any<T>(
        &mut self,
        subtrees: &[T],
        mut matches: impl FnMut(&T) -> bool,
    ) -> Result<bool, NameConstraintsError> {
        for subtree in subtrees {
            self.0 = self
                .0
                .checked_sub(1)
                .ok_or(NameConstraintsError::TooComplex)?;
            if matches(subtree) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Which list a name is being tested against: names we cannot interpret must not slip
/// past an excluded subtree, and wildcards are widened only where that is the safe side.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Permitted,
    Excluded,
}

/// One CA's nameConstraints, decoded once into comparable forms.
struct Constraints {
    permitted: Subtrees,
    excluded: Subtrees,
}

impl Constraints {
    fn compile(nc: &NameConstraints) -> Option<Self> {
        Some(Self {
            permitted: Subtrees::compile(nc.permitted_subtrees.as_deref().unwrap_or(&[]))?,
            excluded: Subtrees::compile(nc.excluded_subtrees.as_deref().unwrap_or(&[]))?,
        })
    }
}

#[derive(Default)]
struct Subtrees {
    directory: Vec<Vec<Rdn>>,
    rfc822: Vec<MailboxConstraint>,
    dns: Vec<DomainConstraint>,
    uri: Vec<DomainConstraint>,
    ip: Vec<IpNet>,
    unsupported: Vec<UnsupportedForm>,
}

impl Subtrees {
    fn compile(subtrees: &[GeneralSubtree]) -> Option<Self> {
        let mut out = Self::default();
        for subtree in subtrees {
            // RFC 5280 fixes minimum at 0 and forbids maximum; any other value has no
            // defined meaning, and guessing one could widen what the CA meant to allow.
            if subtree.minimum != 0 || subtree.maximum.is_some() {
                return None;
            }
            match &subtree.base {
                GeneralName::DirectoryName(name) => out.directory.push(rdns_of(name)),
                GeneralName::Rfc822Name(s) => {
                    out.rfc822.push(MailboxConstraint::parse(s.as_str())?)
                }
                GeneralName::DnsName(s) => out.dns.push(DomainConstraint::parse(s.as_str())),
                GeneralName::UniformResourceIdentifier(s) => {
                    // The constraint is a host or ".domain"; something URI-shaped here
                    // would silently match nothing, which on the excluded side is a hole.
                    if s.as_str().contains([':', '/', '@']) {
                        return None;
                    }
                    out.uri.push(DomainConstraint::parse(s.as_str()));
                }
                GeneralName::IpAddress(octets) => out.ip.push(IpNet::parse(octets.as_bytes())?),
                GeneralName::OtherName(_) => out.add_unsupported(UnsupportedForm::OtherName),
                GeneralName::EdiPartyName(_) => out.add_unsupported(UnsupportedForm::EdiPartyName),
                GeneralName::RegisteredId(_) => out.add_unsupported(UnsupportedForm::RegisteredId),
            }
        }
        Some(out)
    }

    fn add_unsupported(&mut self, form: UnsupportedForm) {
        if !self.unsupported.contains(&form) {
            self.unsupported.push(form);
        }
    }

    /// Whether these subtrees say anything about names of `name`'s form; a form with no
    /// subtree is unconstrained.
    fn constrains(&self, name: &CertName) -> bool {
        match name {
            CertName::Directory(_) => !self.directory.is_empty(),
            CertName::Rfc822(_) => !self.rfc822.is_empty(),
            CertName::Dns(_) => !self.dns.is_empty(),
            CertName::Uri(_) => !self.uri.is_empty(),
            CertName::Ip(_) => !self.ip.is_empty(),
            CertName::Unsupported(form) => self.unsupported.contains(form),
        }
    }

    fn contains(
        &self,
        name: &CertName,
        side: Side,
        budget: &mut Budget,
    ) -> Result<bool, NameConstraintsError> {
        let uninterpretable = |constrained: bool| Ok(side == Side::Excluded && constrained);
        match name {
            CertName::Directory(rdns) => budget.any(&self.directory, |base| {
                base.len() <= rdns.len() && base.iter().zip(rdns).all(|(b, n)| b == n)
            }),
            CertName::Rfc822(Some(mailbox)) => budget.any(&self.rfc822, |c| c.matches(mailbox)),
            CertName::Rfc822(None) => uninterpretable(!self.rfc822.is_empty()),
            CertName::Dns(host) => budget.any(&self.dns, |c| {
                c.matches_dns(host) || (side == Side::Excluded && c.reached_by_wildcard(host))
            }),
            CertName::Uri(UriHost::Domain(host)) => {
                budget.any(&self.uri, |c| c.matches_uri_host(host))
            }
            // RFC 5280: the constraint applies to the host; a URI with none is outside
            // every permitted subtree and inside no excluded one.
            CertName::Uri(UriHost::NoAuthority) => Ok(false),
            CertName::Uri(UriHost::Uninterpretable) => uninterpretable(!self.uri.is_empty()),
            CertName::Ip(Some(ip)) => budget.any(&self.ip, |net| net.contains(ip)),
            CertName::Ip(None) => uninterpretable(!self.ip.is_empty()),
            CertName::Unsupported(_) => Ok(false),
        }
    }
}

/// A name of a certificate, in the same comparable form as the constraints.
enum CertName {
    Directory(Vec<Rdn>),
    /// None: not a mailbox we can split into local part and host.
    Rfc822(Option<Mailbox>),
    Dns(String),
    Uri(UriHost),
    /// None: neither 4 nor 16 octets.
    Ip(Option<IpName>),
    Unsupported(UnsupportedForm),
}

impl CertName {
    fn from_general_name(name: &GeneralName) -> Self {
        match name {
            GeneralName::DirectoryName(dn) => Self::Directory(rdns_of(dn)),
            GeneralName::Rfc822Name(s) => Self::Rfc822(Mailbox::parse(s.as_str())),
            GeneralName::DnsName(s) => Self::Dns(normalize_host(s.as_str())),
            GeneralName::UniformResourceIdentifier(s) => Self::Uri(UriHost::parse(s.as_str())),
            GeneralName::IpAddress(octets) => Self::Ip(IpName::parse(octets.as_bytes())),
            GeneralName::OtherName(_) => Self::Unsupported(UnsupportedForm::OtherName),
            GeneralName::EdiPartyName(_) => Self::Unsupported(UnsupportedForm::EdiPartyName),
            GeneralName::RegisteredId(_) => Self::Unsupported(UnsupportedForm::RegisteredId),
        }
    }
}

fn names_of(cert: &NameConstraintsInput<'_>) -> Vec<CertName> {
    let mut names = Vec::new();
    if !cert.subject.is_empty() {
        names.push(CertName::Directory(rdns_of(cert.subject)));
    }

    let sans = cert.subject_alt_names.unwrap_or(&[]);
    names.extend(sans.iter().map(CertName::from_general_name));

    if !sans.iter().any(|n| matches!(n, GeneralName::Rfc822Name(_))) {
        let emails = cert
            .subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .filter(|atv| atv.oid == EMAIL_ADDRESS)
            .map(|atv| CertName::Rfc822(email_attribute(&atv.value)));
        names.extend(emails);
    }
    names
}

fn email_attribute(value: &Any) -> Option<Mailbox> {
    // PKCS #9 says IA5String; UTF8String shows up in the wild and means the same when ASCII.
    match value.tag() {
        Tag::Ia5String | Tag::Utf8String => {
            let s = std::str::from_utf8(value.value()).ok()?;
            match s.is_ascii() {
                true => Mailbox::parse(s),
                false => None,
            }
        }
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum UnsupportedForm {
    OtherName,
    EdiPartyName,
    RegisteredId,
}

/// A relative distinguished name with its attribute values sorted, so that a multi-valued
/// RDN compares as a set after normalisation, independently of DER's SET OF order.
type Rdn = Vec<AttributeKey>;

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct AttributeKey {
    oid: ObjectIdentifier,
    value: AttributeKeyValue,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum AttributeKeyValue {
    /// Any directory string type, case-folded and whitespace-collapsed (RFC 5280 §7.1,
    /// simplified from RFC 4518): the string type itself does not matter.
    Text(String),
    /// Everything else is compared as its exact DER.
    Der(Tag, Vec<u8>),
}

fn rdns_of(name: &Name) -> Vec<Rdn> {
    name.0
        .iter()
        .map(|rdn| {
            let mut keys: Rdn = rdn
                .0
                .iter()
                .map(|atv| AttributeKey {
                    oid: atv.oid,
                    value: attribute_key_value(&atv.value),
                })
                .collect();
            keys.sort();
            keys
        })
        .collect()
}

fn attribute_key_value(value: &Any) -> AttributeKeyValue {
    let bytes = value.value();
    let text = match value.tag() {
        Tag::PrintableString | Tag::Ia5String | Tag::Utf8String => {
            std::str::from_utf8(bytes).ok().map(fold)
        }
        // T.61 in theory, Latin-1 in every certificate that uses it.
        Tag::TeletexString => Some(fold(
            &bytes.iter().map(|&b| char::from(b)).collect::<String>(),
        )),
        Tag::BmpString => decode_bmp(bytes).map(|s| fold(&s)),
        _ => None,
    };
    match text {
        Some(text) => AttributeKeyValue::Text(text),
        None => AttributeKeyValue::Der(value.tag(), bytes.to_vec()),
    }
}

fn decode_bmp(bytes: &[u8]) -> Option<String> {
    let units = bytes.chunks_exact(2);
    if !units.remainder().is_empty() {
        return None;
    }
    let units = units.map(|pair| match pair {
        [hi, lo] => u16::from_be_bytes([*hi, *lo]),
        _ => 0,
    });
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .ok()
}

fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

/// Host names compare case-insensitively, and a trailing root dot names the same host; both
/// are folded away so that "EVIL.example." cannot step around an excluded "evil.example".
fn normalize_host(host: &str) -> String {
    let host = host.strip_suffix('.').unwrap_or(host);
    host.to_ascii_lowercase()
}

struct Mailbox {
    /// Kept as is: RFC 5321 leaves the local part's case to the receiving host.
    local: String,
    host: String,
}

impl Mailbox {
    fn parse(s: &str) -> Option<Self> {
        let (local, host) = s.rsplit_once('@')?;
        if local.is_empty() || host.is_empty() {
            return None;
        }
        // An '@' may appear in the local part only inside a quoted string (RFC 5321);
        // "a@b@example.com" is not a mailbox, and must not pass as one on example.com.
        let quoted = local.len() >= 2 && local.starts_with('"') && local.ends_with('"');
        if local.contains('@') && !quoted {
            return None;
        }
        Some(Self {
            local: local.to_owned(),
            host: normalize_host(host),
        })
    }
}

/// RFC 5280's three rfc822Name constraint forms.
enum MailboxConstraint {
    /// "user@host": that mailbox only.
    Mailbox(Mailbox),
    /// "host": every mailbox on that host, not on its subdomains.
    Host(String),
    /// ".domain": every mailbox on any host below the domain, not on the domain itself.
    Below(String),
}

impl MailboxConstraint {
    fn parse(s: &str) -> Option<Self> {
        if s.contains('@') {
            return Mailbox::parse(s).map(Self::Mailbox);
        }
        Some(match s.strip_prefix('.') {
            Some(domain) => Self::Below(normalize_host(domain)),
            None => Self::Host(normalize_host(s)),
        })
    }

    fn matches(&self, name: &Mailbox) -> bool {
        match self {
            Self::Mailbox(m) => m.local == name.local && m.host == name.host,
            // An empty host is the root: like an empty dNSName constraint, it covers all.
            Self::Host(host) => host.is_empty() || *host == name.host,
            Self::Below(domain) => is_strictly_below(&name.host, domain),
        }
    }
}

/// A dNSName or uniformResourceIdentifier constraint: a domain, optionally with a leading
/// dot that restricts it to hosts strictly below the domain.
struct DomainConstraint {
    domain: String,
    strictly_below: bool,
}

impl DomainConstraint {
    fn parse(s: &str) -> Self {
        match s.strip_prefix('.') {
            Some(domain) => Self {
                domain: normalize_host(domain),
                strictly_below: true,
            },
            None => Self {
                domain: normalize_host(s),
                strictly_below: false,
            },
        }
    }

    /// dNSName: "example.com" is the domain and everything below it, by whole labels
    /// ("badexample.com" is not below it); an empty constraint covers every name.
    fn matches_dns(&self, host: &str) -> bool {
        if self.domain.is_empty() {
            return true;
        }
        match self.strictly_below {
            true => is_strictly_below(host, &self.domain),
            false => host == self.domain || is_strictly_below(host, &self.domain),
        }
    }

    /// A wildcard name "*.example.com" stands for every single-label name below
    /// example.com, so an excluded subtree rooted at one of those must still catch it.
    fn reached_by_wildcard(&self, host: &str) -> bool {
        let Some(base) = host.strip_prefix("*.") else {
            return false;
        };
        if self.strictly_below {
            return false;
        }
        self.domain
            .strip_suffix(base)
            .and_then(|label| label.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.'))
    }

    /// uniformResourceIdentifier (RFC 5280): without a leading dot the constraint is one
    /// host, with it every host below the domain.
    fn matches_uri_host(&self, host: &str) -> bool {
        match self.strictly_below {
            true => is_strictly_below(host, &self.domain),
            false => host == self.domain,
        }
    }
}

/// `host` is `domain` with at least one more label on the left.
fn is_strictly_below(host: &str, domain: &str) -> bool {
    host.strip_suffix(domain)
        .and_then(|prefix| match domain.is_empty() {
            true => Some(prefix),
            false => prefix.strip_suffix('.'),
        })
        .is_some_and(|labels| !labels.is_empty())
}

enum UriHost {
    Domain(String),
    /// No "//authority" (e.g. "urn:", "mailto:"): nothing for the constraint to apply to.
    NoAuthority,
    /// An authority whose host we will not interpret (IP literal, percent-encoding, empty).
    Uninterpretable,
}

impl UriHost {
    fn parse(uri: &str) -> Self {
        let Some((scheme, rest)) = uri.split_once(':') else {
            return Self::Uninterpretable;
        };
        if scheme.is_empty() {
            return Self::Uninterpretable;
        }
        let Some(rest) = rest.strip_prefix("//") else {
            return Self::NoAuthority;
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host_port = authority
            .rsplit_once('@')
            .map_or(authority, |(_userinfo, host_port)| host_port);
        // An IP literal is not a domain; deciding whether it is "below" one would be a guess.
        if host_port.starts_with('[') {
            return Self::Uninterpretable;
        }
        let host = host_port
            .split_once(':')
            .map_or(host_port, |(host, _port)| host);
        if host.is_empty() || host.contains('%') || host.parse::<Ipv4Addr>().is_ok() {
            return Self::Uninterpretable;
        }
        Self::Domain(normalize_host(host))
    }
}

enum IpName {
    V4(u32),
    V6(u128),
}

impl IpName {
    fn parse(octets: &[u8]) -> Option<Self> {
        match octets.len() {
            4 => Some(Self::V4(u32::from_be_bytes(octets.try_into().ok()?))),
            16 => Some(Self::V6(u128::from_be_bytes(octets.try_into().ok()?))),
            _ => None,
        }
    }
}

enum IpNet {
    V4 { addr: u32, mask: u32 },
    V6 { addr: u128, mask: u128 },
}

impl IpNet {
    /// RFC 5280: address followed by mask, 8 octets for IPv4 and 32 for IPv6. A mask that
    /// is not a CIDR prefix is rejected rather than applied bitwise: nobody means it.
    fn parse(octets: &[u8]) -> Option<Self> {
        match octets.len() {
            8 => {
                let (addr, mask) = octets.split_at(4);
                let addr = u32::from_be_bytes(addr.try_into().ok()?);
                let mask = u32::from_be_bytes(mask.try_into().ok()?);
                (mask.leading_ones() == mask.count_ones()).then_some(Self::V4 { addr, mask })
            }
            32 => {
                let (addr, mask) = octets.split_at(16);
                let addr = u128::from_be_bytes(addr.try_into().ok()?);
                let mask = u128::from_be_bytes(mask.try_into().ok()?);
                (mask.leading_ones() == mask.count_ones()).then_some(Self::V6 { addr, mask })
            }
            _ => None,
        }
    }

    fn contains(&self, ip: &IpName) -> bool {
        match (self, ip) {
            (Self::V4 { addr, mask }, IpName::V4(ip)) => ip & mask == addr & mask,
            (Self::V6 { addr, mask }, IpName::V6(ip)) => ip & mask == addr & mask,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::str::FromStr;

    use der::asn1::{Ia5String, OctetString};
    use x509_cert::attr::AttributeTypeAndValue;
    use x509_cert::ext::pkix::name::OtherName;
    use x509_cert::name::{RdnSequence, RelativeDistinguishedName};

    fn dn(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    fn ia5(s: &str) -> Ia5String {
        Ia5String::new(s).unwrap()
    }

    fn dns(s: &str) -> GeneralName {
        GeneralName::DnsName(ia5(s))
    }

    fn email(s: &str) -> GeneralName {
        GeneralName::Rfc822Name(ia5(s))
    }

    fn uri(s: &str) -> GeneralName {
        GeneralName::UniformResourceIdentifier(ia5(s))
    }

    fn ip(octets: &[u8]) -> GeneralName {
        GeneralName::IpAddress(OctetString::new(octets).unwrap())
    }

    fn subtrees(bases: &[GeneralName]) -> Option<Vec<GeneralSubtree>> {
        match bases.is_empty() {
            true => None,
            false => Some(
                bases
                    .iter()
                    .map(|base| GeneralSubtree {
                        base: base.clone(),
                        minimum: 0,
                        maximum: None,
                    })
                    .collect(),
            ),
        }
    }

    fn constraints(permitted: &[GeneralName], excluded: &[GeneralName]) -> NameConstraints {
        NameConstraints {
            permitted_subtrees: subtrees(permitted),
            excluded_subtrees: subtrees(excluded),
        }
    }

    fn ca<'a>(subject: &'a Name, nc: &'a NameConstraints) -> NameConstraintsInput<'a> {
        NameConstraintsInput {
            subject,
            subject_alt_names: None,
            name_constraints: Some(nc),
            self_issued: false,
        }
    }

    fn ee<'a>(subject: &'a Name, sans: &'a [GeneralName]) -> NameConstraintsInput<'a> {
        NameConstraintsInput {
            subject,
            subject_alt_names: Some(sans),
            name_constraints: None,
            self_issued: false,
        }
    }

    /// One constraining CA, then an end entity with an empty subject and `sans`.
    fn check_sans(nc: &NameConstraints, sans: &[GeneralName]) -> Result<(), NameConstraintsError> {
        let ca_name = dn("CN=CA");
        let empty = Name::default();
        check_path(&[ca(&ca_name, nc), ee(&empty, sans)])
    }

    const NOT_PERMITTED: Result<(), NameConstraintsError> =
        Err(NameConstraintsError::NotPermitted { index: 1 });

    #[test]
    fn dns_suffix_is_by_whole_labels() {
        let nc = constraints(&[dns("example.com")], &[]);
        assert_eq!(check_sans(&nc, &[dns("example.com")]), Ok(()));
        assert_eq!(check_sans(&nc, &[dns("a.b.Example.COM")]), Ok(()));
        assert_eq!(check_sans(&nc, &[dns("example.com.")]), Ok(()));
        assert_eq!(check_sans(&nc, &[dns("badexample.com")]), NOT_PERMITTED);
        assert_eq!(check_sans(&nc, &[dns("example.com.evil")]), NOT_PERMITTED);
        assert_eq!(
            check_sans(&nc, &[dns("a.example.com"), dns("b.example.org")]),
            NOT_PERMITTED
        );
    }

    #[test]
    fn dns_leading_dot_means_strictly_below() {
        let nc = constraints(&[dns(".example.com")], &[]);
        assert_eq!(check_sans(&nc, &[dns("a.example.com")]), Ok(()));
        assert_eq!(check_sans(&nc, &[dns("example.com")]), NOT_PERMITTED);
        assert_eq!(check_sans(&nc, &[dns("badexample.com")]), NOT_PERMITTED);
    }

    #[test]
    fn dns_wildcard_cannot_dodge_an_excluded_host() {
        let nc = constraints(&[dns("example.com")], &[dns("secret.example.com")]);
        assert_eq!(check_sans(&nc, &[dns("*.example.com")]), NOT_PERMITTED);
        assert_eq!(check_sans(&nc, &[dns("*.public.example.com")]), Ok(()));
    }

    #[test]
    fn names_of_unconstrained_forms_pass() {
        let nc = constraints(&[dns("example.com")], &[]);
        assert_eq!(
            check_sans(&nc, &[email("a@elsewhere.org"), uri("https://x.org/")]),
            Ok(())
        );
    }

    #[test]
    fn rfc822_forms() {
        let mailbox = constraints(&[email("Alice@Example.com")], &[]);
        assert_eq!(check_sans(&mailbox, &[email("Alice@example.COM")]), Ok(()));
        assert_eq!(
            check_sans(&mailbox, &[email("alice@example.com")]),
            NOT_PERMITTED
        );
        assert_eq!(
            check_sans(&mailbox, &[email("bob@example.com")]),
            NOT_PERMITTED
        );

        let host = constraints(&[email("example.com")], &[]);
        assert_eq!(check_sans(&host, &[email("anyone@EXAMPLE.com")]), Ok(()));
        assert_eq!(
            check_sans(&host, &[email("anyone@mail.example.com")]),
            NOT_PERMITTED
        );

        let below = constraints(&[email(".example.com")], &[]);
        assert_eq!(
            check_sans(&below, &[email("anyone@mail.example.com")]),
            Ok(())
        );
        assert_eq!(
            check_sans(&below, &[email("anyone@example.com")]),
            NOT_PERMITTED
        );
        assert_eq!(
            check_sans(&below, &[email("anyone@badexample.com")]),
            NOT_PERMITTED
        );

        // Not a mailbox at all: outside every permitted subtree, and caught by an excluded one.
        assert_eq!(check_sans(&host, &[email("no-at-sign")]), NOT_PERMITTED);
        let excluded = constraints(&[], &[email("evil.com")]);
        assert_eq!(check_sans(&excluded, &[email("no-at-sign")]), NOT_PERMITTED);
        assert_eq!(check_sans(&excluded, &[email("x@good.com")]), Ok(()));
    }

    #[test]
    fn subject_email_address_checked_without_rfc822_san() {
        let nc = constraints(&[email("example.com")], &[]);
        let ca_name = dn("CN=CA");
        let outside = dn("CN=Alice,1.2.840.113549.1.9.1=#160e616c696365406576696c2e636f6d");
        let inside = dn("CN=Alice,1.2.840.113549.1.9.1=#1611616c696365406578616d706c652e636f6d");
        assert_eq!(check_path(&[ca(&ca_name, &nc), ee(&inside, &[])]), Ok(()));
        assert_eq!(
            check_path(&[ca(&ca_name, &nc), ee(&outside, &[])]),
            NOT_PERMITTED
        );
        // With an rfc822Name present, the subject's emailAddress is not consulted.
        let sans = [email("alice@example.com")];
        assert_eq!(
            check_path(&[ca(&ca_name, &nc), ee(&outside, &sans)]),
            Ok(())
        );
    }

    #[test]
    fn ipv4_mask() {
        let nc = constraints(&[ip(&[192, 168, 0, 0, 255, 255, 0, 0])], &[]);
        assert_eq!(check_sans(&nc, &[ip(&[192, 168, 7, 9])]), Ok(()));
        assert_eq!(check_sans(&nc, &[ip(&[192, 169, 0, 1])]), NOT_PERMITTED);
        assert_eq!(check_sans(&nc, &[ip(&[0; 16])]), NOT_PERMITTED);
        assert_eq!(check_sans(&nc, &[ip(&[192, 168, 0])]), NOT_PERMITTED);

        let host = constraints(&[], &[ip(&[10, 0, 0, 1, 255, 255, 255, 255])]);
        assert_eq!(check_sans(&host, &[ip(&[10, 0, 0, 1])]), NOT_PERMITTED);
        assert_eq!(check_sans(&host, &[ip(&[10, 0, 0, 2])]), Ok(()));
    }

    #[test]
    fn ipv6_mask() {
        let mut net = [0u8; 32];
        net[..2].copy_from_slice(&[0x20, 0x01]);
        net[16..20].copy_from_slice(&[0xff; 4]);
        let nc = constraints(&[ip(&net)], &[]);
        let mut inside = [0u8; 16];
        inside[..4].copy_from_slice(&[0x20, 0x01, 0, 0]);
        inside[15] = 1;
        assert_eq!(check_sans(&nc, &[ip(&inside)]), Ok(()));
        inside[3] = 1;
        assert_eq!(check_sans(&nc, &[ip(&inside)]), NOT_PERMITTED);
        assert_eq!(check_sans(&nc, &[ip(&[32, 1, 0, 0])]), NOT_PERMITTED);
    }

    #[test]
    fn malformed_constraints() {
        let ca_name = dn("CN=CA");
        let leaf = dn("CN=leaf");
        let malformed = Err(NameConstraintsError::Malformed { index: 0 });
        for nc in [
            constraints(&[ip(&[10, 0, 0, 0, 255])], &[]),
            constraints(&[], &[ip(&[10, 0, 0, 0, 255, 0, 255, 0])]),
            constraints(&[uri("https://example.com/")], &[]),
        ] {
            assert_eq!(check_path(&[ca(&ca_name, &nc), ee(&leaf, &[])]), malformed);
        }

        let mut nc = constraints(&[dns("example.com")], &[]);
        if let Some(subtrees) = nc.permitted_subtrees.as_mut() {
            subtrees[0].minimum = 1;
        }
        assert_eq!(check_path(&[ca(&ca_name, &nc), ee(&leaf, &[])]), malformed);
        if let Some(subtrees) = nc.permitted_subtrees.as_mut() {
            subtrees[0].minimum = 0;
            subtrees[0].maximum = Some(3);
        }
        assert_eq!(check_path(&[ca(&ca_name, &nc), ee(&leaf, &[])]), malformed);

        // The end entity's own constraints constrain nothing and are not looked at.
        let bad = constraints(&[ip(&[1])], &[]);
        assert_eq!(check_path(&[ca(&ca_name, &bad)]), Ok(()));
    }

    fn atv(oid: &str, tag: Tag, value: &str) -> AttributeTypeAndValue {
        AttributeTypeAndValue {
            oid: ObjectIdentifier::new(oid).unwrap(),
            value: Any::new(tag, value.as_bytes()).unwrap(),
        }
    }

    fn raw_dn(atvs: Vec<AttributeTypeAndValue>) -> Name {
        RdnSequence(
            atvs.into_iter()
                .map(|a| RelativeDistinguishedName::try_from(vec![a]).unwrap())
                .collect(),
        )
    }

    #[test]
    fn directory_name_prefix_with_case_and_whitespace() {
        let base = raw_dn(vec![
            atv("2.5.4.6", Tag::PrintableString, "US"),
            atv("2.5.4.10", Tag::PrintableString, "Test  Certificates"),
        ]);
        let nc = constraints(&[GeneralName::DirectoryName(base)], &[]);
        let ca_name = dn("CN=CA");
        let inside = raw_dn(vec![
            atv("2.5.4.6", Tag::PrintableString, "us"),
            atv("2.5.4.10", Tag::Utf8String, " test certificates "),
            atv("2.5.4.3", Tag::Utf8String, "Alice"),
        ]);
        let outside = raw_dn(vec![
            atv("2.5.4.6", Tag::PrintableString, "US"),
            atv("2.5.4.10", Tag::Utf8String, "Other Certificates"),
            atv("2.5.4.3", Tag::Utf8String, "Alice"),
        ]);
        // The constraint's RDNs must be the first ones, not merely present somewhere.
        let reordered = raw_dn(vec![
            atv("2.5.4.10", Tag::PrintableString, "Test Certificates"),
            atv("2.5.4.6", Tag::PrintableString, "US"),
        ]);
        assert_eq!(check_path(&[ca(&ca_name, &nc), ee(&inside, &[])]), Ok(()));
        assert_eq!(
            check_path(&[ca(&ca_name, &nc), ee(&outside, &[])]),
            NOT_PERMITTED
        );
        assert_eq!(
            check_path(&[ca(&ca_name, &nc), ee(&reordered, &[])]),
            NOT_PERMITTED
        );
        // A directoryName in subjectAltName is held to the same constraint.
        let empty = Name::default();
        let sans = [GeneralName::DirectoryName(outside)];
        assert_eq!(
            check_path(&[ca(&ca_name, &nc), ee(&empty, &sans)]),
            NOT_PERMITTED
        );
    }

    #[test]
    fn directory_name_non_string_values_compare_as_der() {
        let base = raw_dn(vec![atv("2.5.4.10", Tag::OctetString, "Org")]);
        let nc = constraints(&[GeneralName::DirectoryName(base)], &[]);
        let ca_name = dn("CN=CA");
        let same = raw_dn(vec![atv("2.5.4.10", Tag::OctetString, "Org")]);
        let folded = raw_dn(vec![atv("2.5.4.10", Tag::OctetString, "org")]);
        let string = raw_dn(vec![atv("2.5.4.10", Tag::Utf8String, "Org")]);
        assert_eq!(check_path(&[ca(&ca_name, &nc), ee(&same, &[])]), Ok(()));
        assert_eq!(
            check_path(&[ca(&ca_name, &nc), ee(&folded, &[])]),
            NOT_PERMITTED
        );
        assert_eq!(
            check_path(&[ca(&ca_name, &nc), ee(&string, &[])]),
            NOT_PERMITTED
        );
    }

    #[test]
    fn excluded_wins_over_permitted() {
        let nc = constraints(&[dns("example.com")], &[dns("secret.example.com")]);
        assert_eq!(check_sans(&nc, &[dns("www.example.com")]), Ok(()));
        assert_eq!(
            check_sans(&nc, &[dns("db.secret.example.com")]),
            NOT_PERMITTED
        );

        let ca_name = dn("CN=CA");
        let dn_nc = constraints(
            &[GeneralName::DirectoryName(dn("O=Org,C=JP"))],
            &[GeneralName::DirectoryName(dn("OU=Bad,O=Org,C=JP"))],
        );
        let leaf = dn("CN=x,OU=BAD,O=Org,C=JP");
        assert_eq!(
            check_path(&[ca(&ca_name, &dn_nc), ee(&leaf, &[])]),
            NOT_PERMITTED
        );
    }

    #[test]
    fn permitted_sets_of_successive_cas_intersect() {
        let root_nc = constraints(&[dns("a.example")], &[]);
        let sub_nc = constraints(&[dns("b.example")], &[]);
        let (root, sub, leaf) = (dn("CN=root"), dn("CN=sub"), Name::default());
        // Disjoint: nothing of that form is permitted any more, whichever CA it matches.
        for name in ["x.a.example", "x.b.example"] {
            let sans = [dns(name)];
            assert_eq!(
                check_path(&[ca(&root, &root_nc), ca(&sub, &sub_nc), ee(&leaf, &sans)]),
                Err(NameConstraintsError::NotPermitted { index: 2 })
            );
        }
        // Other forms stay unconstrained.
        let sans = [email("x@c.example")];
        assert_eq!(
            check_path(&[ca(&root, &root_nc), ca(&sub, &sub_nc), ee(&leaf, &sans)]),
            Ok(())
        );
        // A CA's own names are held to the constraints above it only.
        let sub_sans = [dns("c.example")];
        let mut sub_cert = ca(&sub, &sub_nc);
        sub_cert.subject_alt_names = Some(&sub_sans);
        assert_eq!(
            check_path(&[ca(&root, &root_nc), sub_cert]),
            Err(NameConstraintsError::NotPermitted { index: 1 })
        );
    }

    #[test]
    fn self_issued_intermediate_is_exempt_but_end_entity_is_not() {
        let nc = constraints(&[GeneralName::DirectoryName(dn("O=Org,C=JP"))], &[]);
        let (root, rollover) = (dn("CN=root,O=Org,C=JP"), dn("CN=old,C=US"));
        let leaf = dn("CN=leaf,O=Org,C=JP");
        let mut self_issued = ee(&rollover, &[]);
        self_issued.self_issued = true;
        assert_eq!(
            check_path(&[ca(&root, &nc), self_issued, ee(&leaf, &[])]),
            Ok(())
        );

        let mut self_issued_leaf = ee(&rollover, &[]);
        self_issued_leaf.self_issued = true;
        assert_eq!(
            check_path(&[ca(&root, &nc), self_issued_leaf]),
            NOT_PERMITTED
        );
    }

    #[test]
    fn uri_host_forms() {
        let below = constraints(&[uri(".example.com")], &[]);
        assert_eq!(
            check_sans(&below, &[uri("https://user@WWW.example.com:8443/p?q#f")]),
            Ok(())
        );
        assert_eq!(
            check_sans(&below, &[uri("https://example.com/")]),
            NOT_PERMITTED
        );
        assert_eq!(check_sans(&below, &[uri("urn:isbn:123")]), NOT_PERMITTED);
        assert_eq!(
            check_sans(&below, &[uri("http://[2001:db8::1]/")]),
            NOT_PERMITTED
        );

        let host = constraints(&[], &[uri("evil.example")]);
        assert_eq!(
            check_sans(&host, &[uri("ftp://evil.example:21/x")]),
            NOT_PERMITTED
        );
        assert_eq!(
            check_sans(&host, &[uri("ftp://www.evil.example/x")]),
            Ok(())
        );
        assert_eq!(check_sans(&host, &[uri("urn:isbn:123")]), Ok(()));
        assert_eq!(
            check_sans(&host, &[uri("http://%65vil.example/")]),
            NOT_PERMITTED
        );
        assert_eq!(check_sans(&host, &[uri("http://10.0.0.1/")]), NOT_PERMITTED);
    }

    #[test]
    fn unsupported_form_is_closed() {
        let other = GeneralName::OtherName(OtherName {
            type_id: ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.20.2.3"),
            value: Any::new(Tag::Utf8String, "x@example".as_bytes()).unwrap(),
        });
        let nc = constraints(std::slice::from_ref(&other), &[]);
        assert_eq!(
            check_sans(&nc, std::slice::from_ref(&other)),
            Err(NameConstraintsError::Unsupported { index: 1 })
        );
        // Without a name of that form the constraint has nothing to apply to.
        assert_eq!(check_sans(&nc, &[dns("example.com")]), Ok(()));
        // And a name of that form with no constraint of its form is fine.
        let dns_only = constraints(&[dns("example.com")], &[]);
        assert_eq!(check_sans(&dns_only, &[other]), Ok(()));
    }

    #[test]
    fn budget_is_enforced() {
        let bases: Vec<GeneralName> = (0..400).map(|i| dns(&format!("d{i}.example"))).collect();
        let nc = constraints(&bases, &[]);
        // Every name matches only the last subtree, so each one walks all 400.
        let sans: Vec<GeneralName> = (0..300).map(|_| dns("x.d399.example")).collect();
        assert_eq!(
            check_sans(&nc, &sans),
            Err(NameConstraintsError::TooComplex)
        );
        assert_eq!(check_sans(&nc, &sans[..10]), Ok(()));

        let ca_name = dn("CN=CA");
        let empty = Name::default();
        let path = [ca(&ca_name, &nc), ee(&empty, &sans[..3])];
        assert_eq!(check_path_with_budget(&path, 1_200), Ok(()));
        assert_eq!(
            check_path_with_budget(&path, 1_199),
            Err(NameConstraintsError::TooComplex)
        );
    }
}

//! Certificate policy processing for a certification path (RFC 5280 §6.1.2–6.1.6).
//!
//! The `valid_policy_tree` of RFC 5280 is represented as the `valid_policy_graph` of
//! RFC 9618: every depth holds at most one node per policy OID, and a node may have several
//! parents. A tree can grow exponentially with the path length when CAs assert and map many
//! policies; the graph grows at most linearly in the size of the certificates, and the
//! outputs (validity and the user-constrained policy set) are the same. A size budget on
//! top of that turns hostile inputs into [`PolicyError::TooComplex`] rather than into
//! memory or CPU exhaustion.
//!
//! Pruning of childless nodes is deferred, as RFC 9618 §5 allows: the only place where
//! it matters is the final computation of the user-constrained policy set, which walks up
//! from the nodes of the last depth and so never sees a node without descendants there.
//! The graph is NULL exactly when its deepest level is empty.

use std::collections::{BTreeMap, BTreeSet};

use const_oid::ObjectIdentifier;

/// 2.5.29.32.0
pub const ANY_POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.32.0");

/// Upper bound on the graph size, counted as nodes + parent edges + expected-policy entries.
///
/// Real paths (including bridge-CA paths with mappings) stay in the low hundreds, and the
/// graph is polynomial in the input, so hitting this means a deliberately hostile chain.
const MAX_GRAPH_SIZE: usize = 10_000;

/// What one certificate of the path contributes to policy processing.
/// The path is given anchor-side first: index 0 is the certificate issued by the trust anchor, the last one is the end-entity.
#[derive(Debug, Clone, Default)]
pub struct CertPolicyInput {
    /// certificatePolicies: None = extension absent; Some(list) = the policy OIDs in order (qualifiers are ignored by the caller).
    pub policies: Option<Vec<ObjectIdentifier>>,
    /// policyMappings: (issuerDomainPolicy, subjectDomainPolicy) pairs; None = absent.
    pub mappings: Option<Vec<(ObjectIdentifier, ObjectIdentifier)>>,
    /// policyConstraints.requireExplicitPolicy (SkipCerts)
    pub require_explicit_policy: Option<u32>,
    /// policyConstraints.inhibitPolicyMapping (SkipCerts)
    pub inhibit_policy_mapping: Option<u32>,
    /// inhibitAnyPolicy (SkipCerts)
    pub inhibit_any_policy: Option<u32>,
    /// subject == issuer (RFC 5280 "self-issued"); self-issued non-leaf certs do not decrement the counters.
    pub self_issued: bool,
}

/// The RFC 5280 §6.1.1 inputs (c)–(f) that drive policy processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySettings {
    /// user-initial-policy-set; `[ANY_POLICY]` accepts any policy.
    pub initial_policy_set: Vec<ObjectIdentifier>,
    /// initial-explicit-policy
    pub initial_explicit_policy: bool,
    /// initial-policy-mapping-inhibit
    pub initial_policy_mapping_inhibit: bool,
    /// initial-any-policy-inhibit
    pub initial_inhibit_any_policy: bool,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            initial_policy_set: vec![ANY_POLICY],
            initial_explicit_policy: false,
            initial_policy_mapping_inhibit: false,
            initial_inhibit_any_policy: false,
        }
    }
}

/// The result of successful policy processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOutcome {
    /// The user-constrained policy set (RFC 5280 6.1.6 (g)): empty if the tree is NULL. Contains ANY_POLICY if anyPolicy survives and the initial set contains anyPolicy.
    pub user_constrained_policy_set: Vec<ObjectIdentifier>,
    /// Final explicit_policy counter was 0 (a policy was required).
    pub explicit_policy_required: bool,
}

/// Why policy processing rejected a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// explicit_policy reached 0 and the valid_policy_tree is NULL (or the user-constrained set is empty) — RFC 5280 6.1.3(f)/6.1.5(g).
    ExplicitPolicyRequired,
    /// a policyMappings entry maps to or from anyPolicy (RFC 5280 6.1.4(a)).
    AnyPolicyMapped,
    /// the policy tree/graph exceeded the node budget.
    TooComplex,
}

impl core::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::ExplicitPolicyRequired => "no acceptable certificate policy, but one is required",
            Self::AnyPolicyMapped => "policy mapping to or from anyPolicy",
            Self::TooComplex => "certificate policies too complex to evaluate",
        })
    }
}

impl std::error::Error for PolicyError {}

/// Runs RFC 5280 certificate policy processing over `path` (anchor side first).
pub fn process_policies(
    path: &[CertPolicyInput],
    settings: &PolicySettings,
) -> Result<PolicyOutcome, PolicyError> {
    let n = path.len();
    // §6.1.2 (d)–(f): 0 if the relying party asks for it from the start, otherwise n + 1 so
    // that the counter cannot reach 0 without a policyConstraints/inhibitAnyPolicy in the path.
    let initial = |inhibited: bool| if inhibited { 0 } else { n.saturating_add(1) };
    let mut explicit_policy = initial(settings.initial_explicit_policy);
    let mut inhibit_any_policy = initial(settings.initial_inhibit_any_policy);
    let mut policy_mapping = initial(settings.initial_policy_mapping_inhibit);

    let mut budget = Budget(MAX_GRAPH_SIZE);
    let mut graph = Some(PolicyGraph::new());

    for (i, cert) in path.iter().enumerate() {
        let is_last = i + 1 == n;

        // §6.1.3 (d) and (e).
        graph = match (graph, &cert.policies) {
            (Some(mut g), Some(policies)) => {
                // A self-issued intermediate is "the same CA" (e.g. a key rollover), so its
                // anyPolicy is honoured even once inhibitAnyPolicy has run out.
                let any_policy_allowed = inhibit_any_policy > 0 || (!is_last && cert.self_issued);
                g.add_level(policies, any_policy_allowed, &mut budget)?;
                g.non_null()
            }
            _ => None,
        };

        // §6.1.3 (f).
        if explicit_policy == 0 && graph.is_none() {
            return Err(PolicyError::ExplicitPolicyRequired);
        }

        if is_last {
            break;
        }

        // §6.1.4 (a) and (b). The end-entity's mappings are never consulted.
        if let Some(mappings) = &cert.mappings {
            if mappings
                .iter()
                .any(|(issuer, subject)| *issuer == ANY_POLICY || *subject == ANY_POLICY)
            {
                return Err(PolicyError::AnyPolicyMapped);
            }
            if let Some(mut g) = graph.take() {
                g.apply_mappings(mappings, policy_mapping > 0, &mut budget)?;
                graph = g.non_null();
            }
        }

        // §6.1.4 (h).
        if !cert.self_issued {
            explicit_policy = explicit_policy.saturating_sub(1);
            policy_mapping = policy_mapping.saturating_sub(1);
            inhibit_any_policy = inhibit_any_policy.saturating_sub(1);
        }

        // §6.1.4 (i) and (j): constraints can only tighten the counters.
        if let Some(skip) = cert.require_explicit_policy {
            explicit_policy = explicit_policy.min(skip_certs(skip));
        }
        if let Some(skip) = cert.inhibit_policy_mapping {
            policy_mapping = policy_mapping.min(skip_certs(skip));
        }
        if let Some(skip) = cert.inhibit_any_policy {
            inhibit_any_policy = inhibit_any_policy.min(skip_certs(skip));
        }
    }

    // §6.1.5 (a) and (b): the end-entity counts even when self-issued.
    if let Some(last) = path.last() {
        explicit_policy = explicit_policy.saturating_sub(1);
        if last.require_explicit_policy == Some(0) {
            explicit_policy = 0;
        }
    }

    // §6.1.5 (g). The intersected graph is NULL exactly when this set is empty.
    let user_constrained_policy_set = match &graph {
        Some(g) => g.user_constrained_policy_set(&settings.initial_policy_set),
        None => Vec::new(),
    };

    if explicit_policy == 0 && user_constrained_policy_set.is_empty() {
        return Err(PolicyError::ExplicitPolicyRequired);
    }

    Ok(PolicyOutcome {
        user_constrained_policy_set,
        explicit_policy_required: explicit_policy == 0,
    })
}

fn skip_certs(skip: u32) -> usize {
    usize::try_from(skip).unwrap_or(usize::MAX)
}

struct Budget(usize);

impl Budget {
    fn charge(&mut self, units: usize) -> Result<(), PolicyError> {
        self.0 = self.0.checked_sub(units).ok_or(PolicyError::TooComplex)?;
        Ok(())
    }
}

struct Node {
    valid_policy: ObjectIdentifier,
    expected_policy_set: Vec<ObjectIdentifier>,
    /// Indices into the previous level.
    parents: Vec<usize>,
}

#[derive(Default)]
struct Level {
    nodes: Vec<Node>,
}

impl Level {
    fn position(&self, policy: &ObjectIdentifier) -> Option<usize> {
        self.nodes.iter().position(|n| n.valid_policy == *policy)
    }

    fn push(&mut self, node: Node, budget: &mut Budget) -> Result<(), PolicyError> {
        budget.charge(
            1usize
                .saturating_add(node.parents.len())
                .saturating_add(node.expected_policy_set.len()),
        )?;
        self.nodes.push(node);
        Ok(())
    }
}

/// RFC 9618 valid_policy_graph; `levels[d]` holds the nodes of depth `d`.
///
/// Invariants: each level has at most one node per valid_policy; an anyPolicy node's only
/// parent is the anyPolicy node above it and its expected_policy_set is {anyPolicy}; a node
/// whose parent is an anyPolicy node has no other parent.
struct PolicyGraph {
    levels: Vec<Level>,
}

impl PolicyGraph {
    /// §6.1.2 (a): a single anyPolicy node at depth 0.
    fn new() -> Self {
        Self {
            levels: vec![Level {
                nodes: vec![Node {
                    valid_policy: ANY_POLICY,
                    expected_policy_set: vec![ANY_POLICY],
                    parents: Vec::new(),
                }],
            }],
        }
    }

    fn non_null(self) -> Option<Self> {
        match self.levels.last() {
            Some(level) if !level.nodes.is_empty() => Some(self),
            _ => None,
        }
    }

    /// §6.1.3 (d) (1) and (2) for one certificate's policies.
    fn add_level(
        &mut self,
        cert_policies: &[ObjectIdentifier],
        any_policy_allowed: bool,
        budget: &mut Budget,
    ) -> Result<(), PolicyError> {
        let Some(prev) = self.levels.last() else {
            return Ok(());
        };
        let prev_any = prev.position(&ANY_POLICY);

        // Every policy expected at this depth, with the nodes above that expect it.
        let mut expected: BTreeMap<ObjectIdentifier, Vec<usize>> = BTreeMap::new();
        for (index, node) in prev.nodes.iter().enumerate() {
            for policy in &node.expected_policy_set {
                expected.entry(*policy).or_default().push(index);
            }
        }

        let mut level = Level::default();
        let mut present = BTreeSet::new();
        let mut asserts_any_policy = false;

        for policy in cert_policies {
            if *policy == ANY_POLICY {
                asserts_any_policy = true;
                continue;
            }
            // Duplicate policies are malformed; treat them as one rather than fail.
            if !present.insert(*policy) {
                continue;
            }
            let parents = match (expected.get(policy), prev_any) {
                (Some(parents), _) => parents.clone(),
                (None, Some(any)) => vec![any],
                (None, None) => continue,
            };
            level.push(
                Node {
                    valid_policy: *policy,
                    expected_policy_set: vec![*policy],
                    parents,
                },
                budget,
            )?;
        }

        if asserts_any_policy && any_policy_allowed {
            // Includes anyPolicy itself when the level above has an anyPolicy node.
            for (policy, parents) in &expected {
                if present.insert(*policy) {
                    level.push(
                        Node {
                            valid_policy: *policy,
                            expected_policy_set: vec![*policy],
                            parents: parents.clone(),
                        },
                        budget,
                    )?;
                }
            }
        }

        self.levels.push(level);
        Ok(())
    }

    /// §6.1.4 (b); the anyPolicy check of (a) has already been done.
    fn apply_mappings(
        &mut self,
        mappings: &[(ObjectIdentifier, ObjectIdentifier)],
        mapping_allowed: bool,
        budget: &mut Budget,
    ) -> Result<(), PolicyError> {
        let mut by_issuer: BTreeMap<ObjectIdentifier, BTreeSet<ObjectIdentifier>> = BTreeMap::new();
        for (issuer, subject) in mappings {
            by_issuer.entry(*issuer).or_default().insert(*subject);
        }

        // The anyPolicy node at this depth hangs off the anyPolicy node above it; nodes
        // created for mapped policies become its siblings.
        let parent_any = self
            .levels
            .len()
            .checked_sub(2)
            .and_then(|depth| self.levels.get(depth))
            .and_then(|level| level.position(&ANY_POLICY));

        let Some(level) = self.levels.last_mut() else {
            return Ok(());
        };

        if !mapping_allowed {
            // §6.1.4 (b)(2); pruning of the now childless ancestors is deferred.
            level
                .nodes
                .retain(|node| !by_issuer.contains_key(&node.valid_policy));
            return Ok(());
        }

        let index: BTreeMap<ObjectIdentifier, usize> = level
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (node.valid_policy, i))
            .collect();
        let has_any = index.contains_key(&ANY_POLICY);

        for (issuer, subjects) in by_issuer {
            let expected_policy_set: Vec<ObjectIdentifier> = subjects.into_iter().collect();
            match index.get(&issuer).and_then(|&i| level.nodes.get_mut(i)) {
                Some(node) => {
                    budget.charge(expected_policy_set.len())?;
                    node.expected_policy_set = expected_policy_set;
                }
                None => {
                    if let (true, Some(parent)) = (has_any, parent_any) {
                        level.push(
                            Node {
                                valid_policy: issuer,
                                expected_policy_set,
                                parents: vec![parent],
                            },
                            budget,
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    /// §6.1.5 (g) without rewriting the graph.
    ///
    /// The authority-constrained set is the valid_policy of every node that is a child of an
    /// anyPolicy node and has a descendant at the final depth (the policy as it is known in
    /// the trust anchor's domain, before any mapping), plus anyPolicy when an anyPolicy node
    /// survives at the final depth. Intersecting with the user-initial-policy-set then
    /// follows (g)(iii): the surviving anyPolicy leaf stands for every user policy.
    fn user_constrained_policy_set(
        &self,
        initial_policy_set: &[ObjectIdentifier],
    ) -> Vec<ObjectIdentifier> {
        let mut authority = BTreeSet::new();

        let Some(last) = self.levels.last() else {
            return Vec::new();
        };
        if last.position(&ANY_POLICY).is_some() {
            authority.insert(ANY_POLICY);
        }

        let mut reachable = vec![true; last.nodes.len()];
        for depth in (1..self.levels.len()).rev() {
            let (Some(level), Some(above)) = (self.levels.get(depth), self.levels.get(depth - 1))
            else {
                break;
            };
            let above_any = above.position(&ANY_POLICY);
            let mut above_reachable = vec![false; above.nodes.len()];
            for (node, _) in level
                .nodes
                .iter()
                .zip(&reachable)
                .filter(|(_, reached)| **reached)
            {
                if node.valid_policy != ANY_POLICY
                    && node.parents.iter().any(|p| Some(*p) == above_any)
                {
                    authority.insert(node.valid_policy);
                }
                for parent in &node.parents {
                    if let Some(reached) = above_reachable.get_mut(*parent) {
                        *reached = true;
                    }
                }
            }
            reachable = above_reachable;
        }

        if initial_policy_set.contains(&ANY_POLICY) {
            return authority.into_iter().collect();
        }

        let initial: BTreeSet<ObjectIdentifier> = initial_policy_set.iter().copied().collect();
        if authority.contains(&ANY_POLICY) {
            initial.into_iter().collect()
        } else {
            authority.intersection(&initial).copied().collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nist(n: u32) -> ObjectIdentifier {
        ObjectIdentifier::new_unwrap("2.16.840.1.101.3.2.1.48")
            .push_arc(n)
            .expect("valid arc")
    }

    fn with_policies(policies: &[ObjectIdentifier]) -> CertPolicyInput {
        CertPolicyInput {
            policies: Some(policies.to_vec()),
            ..Default::default()
        }
    }

    fn only(policies: &[ObjectIdentifier]) -> PolicySettings {
        PolicySettings {
            initial_policy_set: policies.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn default_settings_without_policies() {
        let path = vec![CertPolicyInput::default(); 3];
        let outcome = process_policies(&path, &PolicySettings::default()).expect("valid");
        assert!(outcome.user_constrained_policy_set.is_empty());
        assert!(!outcome.explicit_policy_required);
    }

    #[test]
    fn empty_path_yields_initial_set() {
        let outcome = process_policies(&[], &PolicySettings::default()).expect("valid");
        assert_eq!(outcome.user_constrained_policy_set, vec![ANY_POLICY]);
        let outcome = process_policies(&[], &only(&[nist(1)])).expect("valid");
        assert_eq!(outcome.user_constrained_policy_set, vec![nist(1)]);
    }

    #[test]
    fn same_policy_everywhere() {
        let path = vec![with_policies(&[nist(1)]); 3];
        let outcome = process_policies(&path, &PolicySettings::default()).expect("valid");
        assert_eq!(outcome.user_constrained_policy_set, vec![nist(1)]);

        let err = process_policies(
            &path,
            &PolicySettings {
                initial_explicit_policy: true,
                ..only(&[nist(2)])
            },
        );
        assert_eq!(err, Err(PolicyError::ExplicitPolicyRequired));
    }

    #[test]
    fn explicit_policy_required_with_gap() {
        let path = vec![
            CertPolicyInput {
                require_explicit_policy: Some(0),
                ..with_policies(&[nist(1)])
            },
            CertPolicyInput::default(),
            with_policies(&[nist(1)]),
        ];
        assert_eq!(
            process_policies(&path, &PolicySettings::default()),
            Err(PolicyError::ExplicitPolicyRequired)
        );

        // Without the constraint the gap only empties the policy set.
        let mut relaxed = path.clone();
        relaxed[0].require_explicit_policy = None;
        let outcome = process_policies(&relaxed, &PolicySettings::default()).expect("valid");
        assert!(outcome.user_constrained_policy_set.is_empty());
    }

    #[test]
    fn require_explicit_policy_counts_certificates() {
        // SkipCerts 2 on the first CA: the next CA may still lack policies, but the
        // end-entity is the second certificate after it and must have one.
        let mut path = vec![
            CertPolicyInput {
                require_explicit_policy: Some(2),
                ..with_policies(&[nist(1)])
            },
            with_policies(&[nist(1)]),
            CertPolicyInput::default(),
        ];
        assert_eq!(
            process_policies(&path, &PolicySettings::default()),
            Err(PolicyError::ExplicitPolicyRequired)
        );
        path[2] = with_policies(&[nist(1)]);
        let outcome = process_policies(&path, &PolicySettings::default()).expect("valid");
        assert!(outcome.explicit_policy_required);
        assert_eq!(outcome.user_constrained_policy_set, vec![nist(1)]);
    }

    #[test]
    fn end_entity_require_explicit_policy_zero() {
        let path = vec![
            with_policies(&[nist(1)]),
            CertPolicyInput {
                require_explicit_policy: Some(0),
                ..with_policies(&[nist(2)])
            },
        ];
        assert_eq!(
            process_policies(&path, &PolicySettings::default()),
            Err(PolicyError::ExplicitPolicyRequired)
        );

        let mut matching = path.clone();
        matching[1].policies = Some(vec![nist(1)]);
        let outcome = process_policies(&matching, &PolicySettings::default()).expect("valid");
        assert!(outcome.explicit_policy_required);
        assert_eq!(outcome.user_constrained_policy_set, vec![nist(1)]);
    }

    #[test]
    fn self_issued_intermediate_keeps_counters() {
        // inhibitAnyPolicy 1 lets exactly one more non-self-issued certificate use anyPolicy.
        let mut path = vec![
            CertPolicyInput {
                inhibit_any_policy: Some(1),
                ..with_policies(&[nist(1)])
            },
            CertPolicyInput {
                self_issued: true,
                ..with_policies(&[ANY_POLICY])
            },
            with_policies(&[ANY_POLICY]),
            with_policies(&[nist(1)]),
        ];
        let required = PolicySettings {
            initial_explicit_policy: true,
            ..Default::default()
        };
        let outcome = process_policies(&path, &required).expect("valid");
        assert_eq!(outcome.user_constrained_policy_set, vec![nist(1)]);

        path[1].self_issued = false;
        assert_eq!(
            process_policies(&path, &required),
            Err(PolicyError::ExplicitPolicyRequired)
        );
    }

    #[test]
    fn mapping_to_or_from_any_policy_is_rejected() {
        for mapping in [(nist(1), ANY_POLICY), (ANY_POLICY, nist(1))] {
            let path = vec![
                CertPolicyInput {
                    mappings: Some(vec![mapping]),
                    ..with_policies(&[nist(1)])
                },
                with_policies(&[nist(1)]),
            ];
            assert_eq!(
                process_policies(&path, &PolicySettings::default()),
                Err(PolicyError::AnyPolicyMapped)
            );
        }
    }

    #[test]
    fn end_entity_mappings_are_ignored() {
        let path = vec![
            with_policies(&[nist(1)]),
            CertPolicyInput {
                mappings: Some(vec![(ANY_POLICY, nist(1))]),
                ..with_policies(&[nist(1)])
            },
        ];
        assert!(process_policies(&path, &PolicySettings::default()).is_ok());
    }

    #[test]
    fn mapped_policy_reports_issuer_domain() {
        let path = vec![
            CertPolicyInput {
                mappings: Some(vec![(nist(1), nist(2))]),
                ..with_policies(&[nist(1)])
            },
            with_policies(&[nist(2)]),
        ];
        let outcome = process_policies(&path, &only(&[nist(1)])).expect("valid");
        assert_eq!(outcome.user_constrained_policy_set, vec![nist(1)]);

        let outcome = process_policies(&path, &only(&[nist(2)])).expect("valid");
        assert!(outcome.user_constrained_policy_set.is_empty());

        // With mapping inhibited the subject-domain policy is not recognised.
        let inhibited = PolicySettings {
            initial_policy_mapping_inhibit: true,
            ..Default::default()
        };
        let outcome = process_policies(&path, &inhibited).expect("valid");
        assert!(outcome.user_constrained_policy_set.is_empty());
    }

    #[test]
    fn mapping_under_any_policy() {
        let path = vec![
            CertPolicyInput {
                mappings: Some(vec![(nist(1), nist(2))]),
                ..with_policies(&[ANY_POLICY])
            },
            with_policies(&[nist(2)]),
        ];
        let outcome = process_policies(&path, &PolicySettings::default()).expect("valid");
        assert_eq!(outcome.user_constrained_policy_set, vec![nist(1)]);
    }

    #[test]
    fn inhibit_any_policy() {
        let path = vec![
            CertPolicyInput {
                inhibit_any_policy: Some(0),
                ..with_policies(&[nist(1)])
            },
            with_policies(&[ANY_POLICY]),
        ];
        let required = PolicySettings {
            initial_explicit_policy: true,
            ..Default::default()
        };
        assert_eq!(
            process_policies(&path, &required),
            Err(PolicyError::ExplicitPolicyRequired)
        );

        let mut allowed = path.clone();
        allowed[0].inhibit_any_policy = None;
        let outcome = process_policies(&allowed, &required).expect("valid");
        assert_eq!(outcome.user_constrained_policy_set, vec![nist(1)]);
    }

    #[test]
    fn any_policy_everywhere() {
        let path = vec![with_policies(&[ANY_POLICY]); 3];
        let outcome = process_policies(&path, &PolicySettings::default()).expect("valid");
        assert_eq!(outcome.user_constrained_policy_set, vec![ANY_POLICY]);

        let outcome = process_policies(&path, &only(&[nist(3), nist(1)])).expect("valid");
        assert_eq!(outcome.user_constrained_policy_set, vec![nist(1), nist(3)]);
    }

    #[test]
    fn full_mesh_mappings_stay_small() {
        // Every CA asserts five policies and maps each to all five: a valid_policy_tree
        // would have 5^depth nodes, the graph has five per level.
        let policies: Vec<ObjectIdentifier> = (1..=5).map(nist).collect();
        let mappings: Vec<_> = policies
            .iter()
            .flat_map(|&i| policies.iter().map(move |&s| (i, s)))
            .collect();
        let ca = CertPolicyInput {
            mappings: Some(mappings),
            ..with_policies(&policies)
        };
        let mut path = vec![ca; 20];
        path.push(with_policies(&policies));

        let started = std::time::Instant::now();
        let result = process_policies(&path, &PolicySettings::default());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        match result {
            Ok(outcome) => assert_eq!(outcome.user_constrained_policy_set, policies),
            Err(err) => assert_eq!(err, PolicyError::TooComplex),
        }
    }

    #[test]
    fn oversized_input_is_too_complex() {
        let base = ObjectIdentifier::new_unwrap("1.2.3.4");
        let policies: Vec<ObjectIdentifier> = (0..MAX_GRAPH_SIZE as u32 + 1)
            .map(|i| base.push_arc(i).expect("valid arc"))
            .collect();
        let path = vec![with_policies(&policies)];
        assert_eq!(
            process_policies(&path, &PolicySettings::default()),
            Err(PolicyError::TooComplex)
        );
    }
}

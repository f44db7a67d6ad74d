//! Budgets per account and Region.

use crate::Rates;

/// Whose quotas a holder's rates are: the stack's own account and Region by the APIs' names,
/// another target's as `<target id>/<API>`. AWS keeps quotas per account and Region, so holders
/// share a budget only with holders calling the same account and Region; the allocation works
/// per name and never mixes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope(Option<String>);

impl Scope {
    /// The stack's own account and Region.
    pub fn home() -> Scope {
        Scope(None)
    }

    /// Another target's, by its id.
    pub fn target(id: &str) -> Scope {
        Scope(Some(id.to_owned()))
    }

    /// The budget's name for an API.
    pub fn key(&self, api: &str) -> String {
        match &self.0 {
            Some(target) => format!("{target}/{api}"),
            None => api.to_owned(),
        }
    }

    /// Rates by API name as the budget names them.
    pub fn scoped(&self, rates: Rates) -> Rates {
        rates
            .into_iter()
            .map(|(api, r)| (self.key(&api), r))
            .collect()
    }

    /// This scope's rates from a grant, by API name (other scopes' keys dropped).
    pub fn unscoped(&self, rates: &Rates) -> Rates {
        rates
            .iter()
            .filter_map(|(key, r)| {
                let api = match &self.0 {
                    Some(target) => key.strip_prefix(target.as_str())?.strip_prefix('/')?,
                    // Target ids never are API names: a key with a '/' is another scope's.
                    None => Some(key.as_str()).filter(|k| !k.contains('/'))?,
                };
                Some((api.to_owned(), *r))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_reads_back_only_its_own_keys() {
        let eu = Scope::target("eu-west-1");
        let grant: Rates = [
            ("eu-west-1/CreateThing".to_owned(), 5.0),
            ("CreateThing".to_owned(), 7.0),
            ("eu-west-10/CreateThing".to_owned(), 9.0),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            eu.unscoped(&grant).into_iter().collect::<Vec<_>>(),
            [("CreateThing".to_owned(), 5.0)]
        );
        assert_eq!(eu.key("CreateThing"), "eu-west-1/CreateThing");
        assert_eq!(Scope::home().key("CreateThing"), "CreateThing");
        assert_eq!(
            Scope::home()
                .unscoped(&grant)
                .into_iter()
                .collect::<Vec<_>>(),
            [("CreateThing".to_owned(), 7.0)]
        );
    }
}

//! What a `plan` found, per object, as text for people or JSON for automation.

use serde::Serialize;

/// One change applying the manifests would make.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `create`, `update`, `repair`, `apply`, `set`, `upsert`, `delete` or `wait`.
    pub action: &'static str,
    /// What changes (`placement`, `catalog row in us-east-1`, `table clinical.patients`...).
    pub target: String,
    /// How.
    pub detail: String,
}

impl Change {
    /// A change.
    pub fn new(action: &'static str, target: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            action,
            target: target.into(),
            detail: detail.into(),
        }
    }
}

/// The plan of one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObjectPlan {
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// `unchanged`, `changes`, `error` or `skipped`.
    pub outcome: &'static str,
    /// The changes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// Why it failed or was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ObjectPlan {
    /// A plan with `changes` (unchanged when empty).
    pub fn with(kind: &str, name: &str, changes: Vec<Change>) -> Self {
        Self {
            kind: kind.to_owned(),
            name: name.to_owned(),
            outcome: if changes.is_empty() {
                "unchanged"
            } else {
                "changes"
            },
            changes,
            message: None,
        }
    }

    /// An object that cannot be planned (or would be refused), and why.
    pub fn error(kind: &str, name: &str, message: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            name: name.to_owned(),
            outcome: "error",
            changes: Vec::new(),
            message: Some(message.into()),
        }
    }

    /// An object the operator does not plan.
    pub fn skipped(kind: &str, name: &str, why: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            name: name.to_owned(),
            outcome: "skipped",
            changes: Vec::new(),
            message: Some(why.into()),
        }
    }
}

/// The whole plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Whether applying would change anything.
    pub changed: bool,
    /// Whether some object could not be planned.
    pub errors: bool,
    /// Per object, in manifest order.
    pub objects: Vec<ObjectPlan>,
}

impl Report {
    /// A report of `objects`.
    pub fn new(objects: Vec<ObjectPlan>) -> Self {
        Self {
            changed: objects.iter().any(|o| o.outcome == "changes"),
            errors: objects.iter().any(|o| o.outcome == "error"),
            objects,
        }
    }

    /// 0: nothing to change; 2: changes; 1: some object could not be planned
    /// (as `terraform plan -detailed-exitcode`).
    pub fn exit_code(&self) -> u8 {
        match (self.errors, self.changed) {
            (true, _) => 1,
            (false, true) => 2,
            (false, false) => 0,
        }
    }

    /// Text for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for o in &self.objects {
            let head = format!("{} {}", o.kind, o.name);
            match o.outcome {
                "unchanged" => out.push_str(&format!("{head}: no changes\n")),
                "changes" => {
                    out.push_str(&format!("{head}: {} change(s)\n", o.changes.len()));
                    for c in &o.changes {
                        let sign = match c.action {
                            "create" | "apply" => '+',
                            "delete" => '-',
                            "wait" => '…',
                            _ => '~',
                        };
                        out.push_str(&format!(
                            "  {sign} {} {}: {}\n",
                            c.action, c.target, c.detail
                        ));
                    }
                }
                other => out.push_str(&format!(
                    "{head}: {other}: {}\n",
                    o.message.as_deref().unwrap_or_default()
                )),
            }
        }
        let count = |k: &str| self.objects.iter().filter(|o| o.outcome == k).count();
        out.push_str(&format!(
            "\nPlan: {} to change, {} unchanged, {} error(s), {} skipped.\n",
            count("changes"),
            count("unchanged"),
            count("error"),
            count("skipped")
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_terraform_detailed_exitcode() {
        let unchanged = ObjectPlan::with("Tenant", "a", vec![]);
        let changed = ObjectPlan::with(
            "Tenant",
            "b",
            vec![Change::new("create", "placement", "us")],
        );
        assert_eq!(Report::new(vec![unchanged.clone()]).exit_code(), 0);
        assert_eq!(
            Report::new(vec![unchanged.clone(), changed.clone()]).exit_code(),
            2
        );
        let failed = ObjectPlan::error("Tenant", "c", "no region");
        assert_eq!(Report::new(vec![changed, failed]).exit_code(), 1);
        let skipped = ObjectPlan::skipped("Secret", "s", "not managed");
        assert_eq!(Report::new(vec![unchanged, skipped]).exit_code(), 0);
    }

    #[test]
    fn text_names_every_change() {
        let r = Report::new(vec![ObjectPlan::with(
            "Tenant",
            "b",
            vec![Change::new("create", "catalog row in us-east-1", "name=b")],
        )]);
        let t = r.text();
        assert!(
            t.contains("Tenant b: 1 change(s)\n  + create catalog row in us-east-1: name=b"),
            "{t}"
        );
        assert!(t.contains("Plan: 1 to change, 0 unchanged"), "{t}");
    }
}

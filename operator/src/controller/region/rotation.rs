//! Rotation of the data plane password without downtime, decided purely. PostgreSQL keeps
//! one password per role, so the Region has two logins that alternate
//! ([`crate::db::owned::dataplane_role`] and [`crate::db::owned::standby_role`]): a
//! rotation gives the login the Secret does not name a new password and LOGIN, then points
//! the Secret at it (phase 1); the old login keeps working for the data planes still
//! connected with it until none is left, or the drain limit passes, and then loses its
//! login and password (phase 2). What is going on is read from the world every pass, never
//! remembered: the login the Secret names is the active one, the other one draining while
//! it may log in, the rotation last done is recorded in the Secret beside the password.

use std::time::Duration;

use phoenix_crds::Region;

use crate::db::state::DbState;

/// The annotation that requests a rotation: any value not yet applied.
pub const ANNOTATION: &str = "phoenixguardian.io/rotate-dataplane-password";

/// Secret key recording the annotation value the current password was made for.
pub const ROTATION_KEY: &str = "rotation";

/// Secret key recording when the Secret last changed logins (RFC 3339).
pub const ROTATED_AT_KEY: &str = "rotatedAt";

/// What dereference saw of the two logins, and what is requested.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginsSeen {
    /// The login the Secret names (the Region's first one when it names neither).
    pub active: String,
    /// The other login.
    pub other: String,
    /// The other login's sessions, read when it may log in.
    pub other_sessions: Option<i64>,
    /// The annotation value the Secret's password was made for.
    pub recorded: Option<String>,
    /// When the Secret last moved to another login.
    pub rotated_at: Option<jiff::Timestamp>,
    /// The annotation's value.
    pub requested: Option<String>,
    /// Now.
    pub now: jiff::Timestamp,
    /// How long the old login may drain before its sessions are ended.
    pub max_drain: Duration,
}

impl LoginsSeen {
    /// The logins of a Region whose Secret names `active`, nothing more known.
    pub fn quiet(active: &str, other: &str) -> Self {
        Self {
            active: active.to_owned(),
            other: other.to_owned(),
            other_sessions: None,
            recorded: None,
            rotated_at: None,
            requested: None,
            now: jiff::Timestamp::UNIX_EPOCH,
            max_drain: Duration::from_secs(3600),
        }
    }
}

/// One step of a rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// Phase 1: `to` gets a new password and LOGIN, then the Secret names it.
    Start {
        /// The login the Secret names now.
        from: String,
        /// The login it will name.
        to: String,
        /// The annotation value this rotation applies.
        value: String,
    },
    /// The old login still has sessions: nothing to do yet.
    Draining {
        /// The old login.
        login: String,
        /// Its sessions.
        sessions: i64,
        /// Time left before its sessions are ended.
        left: Duration,
        /// A newer annotation value, started once this rotation is finished.
        pending: Option<String>,
    },
    /// Phase 2: the old login loses LOGIN and password.
    Retire {
        /// The old login.
        login: String,
        /// Sessions ended because the drain limit passed (0: it drained).
        terminated: i64,
    },
}

impl Rotation {
    /// Whether the step changes something (waiting does not).
    pub fn acts(&self) -> bool {
        !matches!(self, Rotation::Draining { .. })
    }

    /// For plans.
    pub fn describe(&self) -> String {
        match self {
            Rotation::Start { from, to, value } => format!(
                "rotate the data plane password ({value:?}): give {to} a new password and LOGIN, name it in the Secret; {from} drains"
            ),
            Rotation::Draining {
                login,
                sessions,
                left,
                pending,
            } => {
                let mut s = format!(
                    "wait for {login} to drain: {sessions} session(s), ended in {}s",
                    left.as_secs()
                );
                if let Some(p) = pending {
                    s.push_str(&format!("; rotation {p:?} starts after"));
                }
                s
            }
            Rotation::Retire { login, terminated } if *terminated > 0 => format!(
                "retire {login} (NOLOGIN PASSWORD NULL) and end its {terminated} session(s): the drain limit passed"
            ),
            Rotation::Retire { login, .. } => {
                format!("retire {login} (NOLOGIN PASSWORD NULL): no session left")
            }
        }
    }
}

/// The value of the rotation annotation on `region`.
pub fn requested(region: &Region) -> Option<String> {
    region
        .metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION)
        .cloned()
}

/// The step of a rotation this pass takes, if any. A draining login is finished first (a
/// second request waits for it); a request starts only on a Secret that already names one
/// of the Region's logins.
pub fn rotation(seen: &LoginsSeen, state: &DbState, secret_settled: bool) -> Option<Rotation> {
    let draining = state.role(&seen.other).is_some_and(|r| r.login);
    if draining {
        let sessions = seen.other_sessions.unwrap_or(0);
        let waited = seen
            .rotated_at
            .map(|t| seen.now.duration_since(t).unsigned_abs())
            .unwrap_or_default();
        if sessions == 0 {
            return Some(Rotation::Retire {
                login: seen.other.clone(),
                terminated: 0,
            });
        }
        // Without a recorded start (the Secret was not written by a rotation), the login
        // was given LOGIN by hand or by an interrupted pass: it drains like any other.
        if seen.rotated_at.is_some() && waited >= seen.max_drain {
            return Some(Rotation::Retire {
                login: seen.other.clone(),
                terminated: sessions,
            });
        }
        let left = if seen.rotated_at.is_some() {
            seen.max_drain.saturating_sub(waited)
        } else {
            seen.max_drain
        };
        return Some(Rotation::Draining {
            login: seen.other.clone(),
            sessions,
            left,
            pending: seen
                .requested
                .clone()
                .filter(|r| Some(r) != seen.recorded.as_ref()),
        });
    }
    match &seen.requested {
        Some(value) if secret_settled && Some(value) != seen.recorded.as_ref() => {
            Some(Rotation::Start {
                from: seen.active.clone(),
                to: seen.other.clone(),
                value: value.clone(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::role_attrs::desired_role;

    const A: &str = "phoenix_dataplane_eu";
    const B: &str = "phoenix_dataplane2_eu";

    fn state(b_login: Option<bool>) -> DbState {
        let mut s = DbState::empty();
        s.roles = vec![desired_role(A, A)];
        if let Some(login) = b_login {
            let mut r = desired_role(B, B);
            r.login = login;
            s.roles.push(r);
        }
        s
    }

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + seconds).expect("timestamp")
    }

    fn seen(requested: Option<&str>, recorded: Option<&str>) -> LoginsSeen {
        LoginsSeen {
            requested: requested.map(str::to_owned),
            recorded: recorded.map(str::to_owned),
            now: at(0),
            ..LoginsSeen::quiet(A, B)
        }
    }

    #[test]
    fn a_new_annotation_value_starts_phase_one_towards_the_other_login() {
        let step = rotation(&seen(Some("1"), None), &state(None), true);
        assert_eq!(
            step,
            Some(Rotation::Start {
                from: A.into(),
                to: B.into(),
                value: "1".into()
            })
        );
        // From the second login back to the first.
        let mut s = seen(Some("2"), Some("1"));
        (s.active, s.other) = (B.into(), A.into());
        let mut st = state(None);
        st.roles[0].login = false;
        assert!(matches!(
            rotation(&s, &st, true),
            Some(Rotation::Start { to, .. }) if to == A
        ));
        // Not while the Secret is being moved off a foreign role.
        assert_eq!(rotation(&seen(Some("1"), None), &state(None), false), None);
    }

    #[test]
    fn a_converged_region_rotates_nothing() {
        assert_eq!(rotation(&seen(None, None), &state(None), true), None);
        assert_eq!(
            rotation(&seen(Some("1"), Some("1")), &state(Some(false)), true),
            None
        );
    }

    #[test]
    fn an_old_login_still_connected_is_waited_for() {
        let mut s = seen(Some("1"), Some("1"));
        (s.active, s.other) = (B.into(), A.into());
        s.other_sessions = Some(3);
        s.rotated_at = Some(at(-600));
        let step = rotation(&s, &state(Some(true)), true).expect("a step");
        assert_eq!(
            step,
            Rotation::Draining {
                login: A.into(),
                sessions: 3,
                left: Duration::from_secs(3000),
                pending: None
            }
        );
        assert!(!step.acts());
    }

    #[test]
    fn a_drained_login_is_retired_and_one_past_the_limit_has_its_sessions_ended() {
        let mut s = seen(Some("1"), Some("1"));
        (s.active, s.other) = (B.into(), A.into());
        s.other_sessions = Some(0);
        s.rotated_at = Some(at(-10));
        assert_eq!(
            rotation(&s, &state(Some(true)), true),
            Some(Rotation::Retire {
                login: A.into(),
                terminated: 0
            })
        );
        s.other_sessions = Some(2);
        s.rotated_at = Some(at(-3600));
        assert_eq!(
            rotation(&s, &state(Some(true)), true),
            Some(Rotation::Retire {
                login: A.into(),
                terminated: 2
            })
        );
        // LOGIN given by hand (no rotation recorded): drains, never cut off.
        s.rotated_at = None;
        assert!(matches!(
            rotation(&s, &state(Some(true)), true),
            Some(Rotation::Draining { sessions: 2, .. })
        ));
    }

    #[test]
    fn a_second_value_while_draining_waits_for_the_running_rotation() {
        let mut s = seen(Some("2"), Some("1"));
        (s.active, s.other) = (B.into(), A.into());
        s.other_sessions = Some(1);
        s.rotated_at = Some(at(-5));
        assert!(matches!(
            rotation(&s, &state(Some(true)), true),
            Some(Rotation::Draining { pending: Some(p), .. }) if p == "2"
        ));
        // Once drained, the old login is retired first; the next pass starts "2".
        s.other_sessions = Some(0);
        assert!(matches!(
            rotation(&s, &state(Some(true)), true),
            Some(Rotation::Retire { .. })
        ));
        let mut st = state(Some(true));
        st.roles[0].login = false;
        assert!(matches!(
            rotation(&s, &st, true),
            Some(Rotation::Start { value, to, .. }) if value == "2" && to == A
        ));
    }
}

//! The rotation schedule's runs: every due transition of every keyset,
//! each keyset on its own (`schedule.rs` says what is due).

use super::*;

impl Keyring {
    /// Runs every scheduled transition due at `at`. Blocking. Returns how
    /// many transitions were made. Each keyset is handled on its own: a
    /// keyset whose transition fails is logged and audited and retried at
    /// the next tick, and the keysets after it still proceed.
    ///
    /// # Errors
    /// The first failure, after every keyset was tried.
    pub fn tick(&self, at: i64) -> Result<usize> {
        let mut done = 0;
        let mut first_error = None;
        let snapshot = self.snapshot();
        for ks in snapshot.keysets.values() {
            match self.tick_keyset(ks, at) {
                Ok(n) => done += n,
                Err(e) => {
                    self.schedule_failed(&ks.name, &e);
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if done == 0 => Err(e),
            _ => Ok(done),
        }
    }

    /// Runs the scheduled transitions of keyset `name` due at `at` (the
    /// background loop runs each keyset on its own thread, so a device that
    /// hangs holds up only its own keysets' schedule). Blocking.
    ///
    /// # Errors
    /// `NotFound`, or the transition's failure (logged and audited as in [`Keyring::tick`]).
    pub fn tick_named(&self, name: &str, at: i64) -> Result<usize> {
        let ks = self.keyset(name)?;
        self.tick_keyset(&ks, at)
            .inspect_err(|e| self.schedule_failed(name, e))
    }

    /// Logs and audits a failed scheduled transition (retried at the next tick).
    pub(super) fn schedule_failed(&self, keyset: &str, e: &Error) {
        tracing::error!(keyset, error = %e, "scheduled transition failed; retrying at the next tick");
        if let Some(a) = self.audit.get() {
            let detail = e.to_string();
            let _ = a.record_blocking(
                serde_json::json!({"schedule": true}),
                &crate::audit::Event {
                    operation: "scheduled_transition",
                    keyset: Some(keyset),
                    outcome: "error",
                    detail: Some(&detail),
                    ..crate::audit::Event::default()
                },
            );
        }
    }

    /// The watch on the backend of keyset `name`, if it is served.
    pub fn guard_of(&self, name: &str) -> Option<Arc<DeviceGuard>> {
        let snap = self.snapshot();
        self.guards.get(&snap.keysets.get(name)?.backend).cloned()
    }

    /// The scheduled transitions of one keyset due at `at`.
    pub(super) fn tick_keyset(&self, ks: &Keyset, at: i64) -> Result<usize> {
        let mut done = 0;
        {
            for due in schedule::due(ks, at) {
                match due {
                    schedule::Due::Rotate => {
                        let (backend, version) = self.new_version(ks, ks.next_number())?;
                        let kid = version.kid.clone();
                        let key_ref = version.key_ref.clone();
                        let added = self.record_new(&backend, &key_ref, |m| {
                            let Some(k) = m.keysets.get_mut(&ks.name) else {
                                return Ok(false);
                            };
                            // Another daemon may have rotated meanwhile.
                            if !schedule::due(k, at).contains(&schedule::Due::Rotate) {
                                return Ok(false);
                            }
                            k.add_version(version.clone(), false, at, "schedule");
                            Ok(true)
                        })?;
                        if added {
                            self.audit_transition("schedule", &ks.name, &kid, None, "pending");
                            done += 1;
                        } else if let Err(e) = backend.destroy(&key_ref) {
                            tracing::warn!(error = %e, "could not remove an unneeded key");
                        }
                    }
                    schedule::Due::Promote(kid) => {
                        self.change_keyset(&ks.name, |k| {
                            if schedule::due(k, at).contains(&schedule::Due::Promote(kid.clone())) {
                                k.activate(&kid, at, "schedule")?;
                            }
                            Ok(())
                        })?;
                        self.audit_transition(
                            "schedule",
                            &ks.name,
                            &kid,
                            Some("pending"),
                            "active",
                        );
                        done += 1;
                    }
                    schedule::Due::Expire(kid) => {
                        let destroy = ks.policy.auto_destroy;
                        let after = self.change_keyset(&ks.name, |k| {
                            if schedule::due(k, at).contains(&schedule::Due::Expire(kid.clone())) {
                                if destroy {
                                    k.destroy(&kid, at, "schedule")?;
                                } else {
                                    k.disable(&kid, at, "schedule")?;
                                }
                            }
                            Ok(())
                        })?;
                        if destroy {
                            if let Some(v) = after.versions.iter().find(|v| v.kid == kid) {
                                self.backend_of(&after.backend)?.destroy(&v.key_ref)?;
                            }
                        }
                        self.audit_transition(
                            "schedule",
                            &ks.name,
                            &kid,
                            Some("retired"),
                            if destroy { "destroyed" } else { "disabled" },
                        );
                        done += 1;
                    }
                }
            }
        }
        Ok(done)
    }
}

//! Modules: list them, switch them on and off, change their settings (admin). Each module
//! kind has a fixed set of settings with types and ranges; anything else is refused with the
//! setting named (`config.<key>`).

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::orders::optional_body;
use crate::api_types::modules::Module;
use crate::auth::access::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorBody};
use crate::hub::Topic;
use crate::state::AppState;
use qtm_store as store;

/// The module routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_module))
        .routes(routes!(toggle))
        .routes(routes!(configure))
}

/// Every module with its status and settings.
#[utoipa::path(get, path = "/api/modules", tag = "modules",
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Vec<Module>)))]
async fn list(State(state): State<AppState>) -> ApiResult<ApiJson<Vec<Module>>> {
    let modules = store::modules::list(&state.store).await?;
    Ok(ApiJson(modules.into_iter().map(Module::from).collect()))
}

/// One module.
#[utoipa::path(get, path = "/api/modules/{id}", tag = "modules",
    params(("id" = String, Path, description = "module id, e.g. `replay-feed`")),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Module), (status = 404, body = ErrorBody)))]
async fn get_module(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<ApiJson<Module>> {
    Ok(ApiJson(
        store::modules::get(&state.store, &id).await?.into(),
    ))
}

/// The wanted state; without it the module flips.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToggleRequest {
    pub enabled: Option<bool>,
}

fn announce(state: &AppState, event: &str, module: &store::modules::Module, by: &str) {
    let data = json!({"event": event, "module": Module::from(module), "by": by});
    state
        .hub
        .publish(Topic::SystemHealth, Some(module.id.clone()), &data);
    state
        .hub
        .publish(Topic::Notifications, Some(module.id.clone()), &data);
}

/// Switch a module on or off (admin). Body optional: `{"enabled": bool}`; without it the
/// module flips. Announced on `system-health` and `notifications`.
#[utoipa::path(put, path = "/api/modules/{id}/toggle", tag = "modules",
    params(("id" = String, Path, description = "module id")), request_body(content = Option<ToggleRequest>),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses((status = 200, body = Module), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn toggle(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> ApiResult<ApiJson<Module>> {
    let current = store::modules::get(&state.store, &id).await?;
    let req: ToggleRequest = optional_body(&body)?;
    let enabled = req.enabled.unwrap_or(!current.enabled);
    let module = store::modules::set_enabled(&state.store, &id, enabled).await?;
    apply_feed(&state, &module).await?;
    announce(&state, "module_toggled", &module, &p.username);
    Ok(ApiJson(module.into()))
}

/// Start, restart or stop the replay feed to match its module; give the live engine its
/// CPU share caps.
async fn apply_feed(state: &AppState, module: &store::modules::Module) -> ApiResult<()> {
    if module.id == "ingest-bridge" {
        state.set_ingest_enabled(module.enabled);
        return Ok(());
    }
    if module.id == "live-engine" {
        // The caps apply at once; the other engine settings when the server starts.
        state
            .live
            .set_cpu_caps(qtm_live::CpuCaps::from_settings(&module.config));
        return Ok(());
    }
    if module.id != "replay-feed" || !state.config.replay {
        return Ok(());
    }
    if module.enabled {
        let mut settings: qtm_live::ReplaySettings = serde_json::from_value(module.config.clone())
            .map_err(|e| ApiError::validation("config", format!("replay-feed settings: {e}")))?;
        settings.data_dir = state.config.data_dir.clone();
        state
            .live
            .start_replay(&settings)
            .await
            .map_err(super::strategies::live_error)?;
    } else {
        state.live.stop_feed("replay-feed");
    }
    Ok(())
}

/// New settings: `{"config": {...}}` (or the settings object itself). Only the keys given
/// change; each is checked against the module kind's settings.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ConfigureRequest {
    #[schema(value_type = Object)]
    pub config: Value,
}

/// A setting's type and range.
enum Rule {
    /// A number in (min, max].
    Number {
        min_exclusive: f64,
        max: f64,
    },
    /// A number in (min, max], or `null` for none.
    NumberOrNull {
        min_exclusive: f64,
        max: f64,
    },
    /// A whole number in [min, max].
    Int {
        min: i64,
        max: i64,
    },
    Bool,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A list of at most `max` strings, each 1–64 characters without spaces.
    Names {
        max: usize,
    },
    /// An object of at most `max` entries, each a positive id (as a string key) → a percentage
    /// in (0, 100].
    PercentById {
        max: usize,
    },
}

/// The settings each module kind understands.
fn rules(kind: &str) -> &'static [(&'static str, Rule)] {
    match kind {
        "feed" => &[
            ("source", Rule::OneOf(&["database", "files"])),
            (
                "speed",
                Rule::Number {
                    min_exclusive: 0.0,
                    // Daily bars need large factors to move at all (1e6: a day in 0.09 s).
                    max: 100_000_000.0,
                },
            ),
            ("loop", Rule::Bool),
            (
                "max_pause_secs",
                Rule::NumberOrNull {
                    min_exclusive: 0.0,
                    max: 86_400.0,
                },
            ),
            ("symbols", Rule::Names { max: 1_000 }),
        ],
        "ingest" => &[(
            "max_batch",
            Rule::Int {
                min: 1,
                max: 1_000_000,
            },
        )],
        "signals" => &[("sources", Rule::Names { max: 100 })],
        "engine" => &[
            (
                "snapshot_every_secs",
                Rule::Int {
                    min: 1,
                    max: 86_400,
                },
            ),
            (
                "initial_cash",
                Rule::Number {
                    min_exclusive: 0.0,
                    max: 1e15,
                },
            ),
            (
                "cpu_share_cap_pct",
                Rule::Number {
                    min_exclusive: 0.0,
                    max: 100.0,
                },
            ),
            (
                "cpu_window_secs",
                Rule::Number {
                    min_exclusive: 0.0,
                    max: 3_600.0,
                },
            ),
            (
                "cpu_share_cap_pct_by_instance",
                Rule::PercentById { max: 100_000 },
            ),
        ],
        _ => &[],
    }
}

/// Check `changes` against the settings of `kind`; every error names `config.<key>`.
pub fn validate_config(kind: &str, changes: &Map<String, Value>) -> ApiResult<()> {
    let known = rules(kind);
    for (key, v) in changes {
        let field = format!("config.{key}");
        let Some((_, rule)) = known.iter().find(|(k, _)| k == key) else {
            let names: Vec<&str> = known.iter().map(|(k, _)| *k).collect();
            return Err(ApiError::validation(
                field,
                format!(
                    "unknown setting `{key}` for a {kind} module; known: {}",
                    names.join(", ")
                ),
            ));
        };
        let bad = |why: String| {
            Err(ApiError::validation(
                field.clone(),
                format!("{key} {why}, got {v}"),
            ))
        };
        match rule {
            Rule::Number { min_exclusive, max } => match v.as_f64() {
                Some(x) if x > *min_exclusive && x <= *max => {}
                _ => {
                    return bad(format!(
                        "must be a number above {min_exclusive} and at most {max}"
                    ));
                }
            },
            Rule::NumberOrNull { min_exclusive, max } => match v.as_f64() {
                _ if v.is_null() => {}
                Some(x) if x > *min_exclusive && x <= *max => {}
                _ => {
                    return bad(format!(
                        "must be null or a number above {min_exclusive} and at most {max}"
                    ));
                }
            },
            Rule::Int { min, max } => match v.as_i64() {
                Some(x) if (*min..=*max).contains(&x) => {}
                _ => return bad(format!("must be a whole number from {min} to {max}")),
            },
            Rule::Bool => {
                if !v.is_boolean() {
                    return bad("must be true or false".into());
                }
            }
            Rule::OneOf(choices) => match v.as_str() {
                Some(s) if choices.contains(&s) => {}
                _ => return bad(format!("must be one of {}", choices.join(", "))),
            },
            Rule::Names { max } => {
                let ok = v.as_array().is_some_and(|a| {
                    a.len() <= *max
                        && a.iter().all(|s| {
                            s.as_str().is_some_and(|s| {
                                !s.is_empty()
                                    && s.chars().count() <= 64
                                    && !s.contains(char::is_whitespace)
                            })
                        })
                });
                if !ok {
                    return bad(format!(
                        "must be a list of at most {max} names (1 to 64 characters, no spaces)"
                    ));
                }
            }
            Rule::PercentById { max } => {
                let ok = v.as_object().is_some_and(|m| {
                    m.len() <= *max
                        && m.iter().all(|(k, p)| {
                            k.parse::<i64>().is_ok_and(|id| id > 0)
                                && p.as_f64().is_some_and(|p| p > 0.0 && p <= 100.0)
                        })
                });
                if !ok {
                    return bad(format!(
                        "must be an object of at most {max} entries, each \"<instance id>\": a percentage above 0 and at most 100"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Change a module's settings (admin). Only the keys given change; each is checked against
/// the module kind's settings (`feed`: source `database`|`files`, speed in (0, 10⁸], loop,
/// max_pause_secs in (0, 86400] or null, symbols; `ingest`: max_batch; `signals`: sources;
/// `engine`: snapshot_every_secs, initial_cash, cpu_share_cap_pct in (0, 100],
/// cpu_window_secs in (0, 3600], cpu_share_cap_pct_by_instance `{"<instance id>": pct}`; the
/// CPU settings apply at once, the others at the next start). Stored and announced on
/// `system-health` and `notifications`.
#[utoipa::path(post, path = "/api/modules/{id}/configure", tag = "modules", operation_id = "configure_module",
    params(("id" = String, Path, description = "module id")), request_body = ConfigureRequest,
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses((status = 200, body = Module), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn configure(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<ApiJson<Module>> {
    let module = store::modules::get(&state.store, &id).await?;
    let changes = match &body {
        Value::Object(o) if o.len() == 1 && o.contains_key("config") => match &o["config"] {
            Value::Object(c) => c.clone(),
            _ => {
                return Err(ApiError::validation(
                    "config",
                    "config must be an object of settings",
                ));
            }
        },
        Value::Object(o) => o.clone(),
        _ => {
            return Err(ApiError::validation(
                "config",
                "the body must be {\"config\": {...}} or an object of settings",
            ));
        }
    };
    if changes.is_empty() {
        return Err(ApiError::validation(
            "config",
            "config is empty: give the settings to change",
        ));
    }
    validate_config(&module.kind, &changes)?;
    let mut config = match module.config.clone() {
        Value::Object(c) => c,
        _ => Map::new(),
    };
    config.extend(changes);
    // Applied before it is stored: settings the feed refuses (a broken replay file) are
    // answered with the reason and leave the stored ones as they were.
    let candidate = store::modules::Module {
        config: Value::Object(config),
        ..module
    };
    if candidate.enabled {
        apply_feed(&state, &candidate).await?;
    }
    let module =
        store::modules::set_config(&state.store, &id, &candidate.config, Some(p.user_id)).await?;
    announce(&state, "module_configured", &module, &p.username);
    Ok(ApiJson(module.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: &str, v: Value) -> Result<(), String> {
        validate_config(kind, v.as_object().unwrap()).map_err(|e| e.field.unwrap())
    }

    #[test]
    fn every_builtin_default_passes_its_own_rules() {
        for (id, _, kind, _, _, config) in store::modules::builtin() {
            check(kind, config).unwrap_or_else(|f| panic!("{id}: {f}"));
        }
    }

    #[test]
    fn bad_settings_name_their_key() {
        assert_eq!(
            check("feed", json!({"speed": 0})),
            Err("config.speed".into())
        );
        assert_eq!(
            check("feed", json!({"speed": 100000000.5})),
            Err("config.speed".into())
        );
        assert!(check("feed", json!({"speed": 100000000})).is_ok());
        for bad in [json!(0), json!(-1), json!(86_401), json!("1")] {
            assert_eq!(
                check("feed", json!({"max_pause_secs": bad})),
                Err("config.max_pause_secs".into())
            );
        }
        assert!(check("feed", json!({"max_pause_secs": 0.25})).is_ok());
        assert!(check("feed", json!({"max_pause_secs": null})).is_ok());
        assert_eq!(
            check("feed", json!({"loop": "yes"})),
            Err("config.loop".into())
        );
        assert_eq!(
            check("feed", json!({"source": "s3"})),
            Err("config.source".into())
        );
        assert_eq!(
            check("feed", json!({"symbols": ["A", 1]})),
            Err("config.symbols".into())
        );
        assert_eq!(check("feed", json!({"sped": 1})), Err("config.sped".into()));
        assert_eq!(
            check("ingest", json!({"max_batch": 0})),
            Err("config.max_batch".into())
        );
        assert_eq!(
            check("engine", json!({"initial_cash": -5})),
            Err("config.initial_cash".into())
        );
        for bad in [json!(0), json!(100.5), json!("20")] {
            assert_eq!(
                check("engine", json!({"cpu_share_cap_pct": bad})),
                Err("config.cpu_share_cap_pct".into())
            );
        }
        for bad in [
            json!({"x": 50}),
            json!({"0": 50}),
            json!({"3": 0}),
            json!({"3": 101}),
            json!([50]),
        ] {
            assert_eq!(
                check("engine", json!({"cpu_share_cap_pct_by_instance": bad})),
                Err("config.cpu_share_cap_pct_by_instance".into())
            );
        }
        assert!(
            check(
                "engine",
                json!({"cpu_share_cap_pct": 100, "cpu_window_secs": 2.5,
                       "cpu_share_cap_pct_by_instance": {"3": 60}})
            )
            .is_ok()
        );
    }
}

//! The terraform environment and the gateway's built-in defaults must agree:
//! port, heart-beat vs the ALB idle timeout, drain timings vs the
//! deregistration delay and the health check, rebalancing, the
//! health-check path.
//! (`scripts/infra/consistency.py` checks terraform against ansible.)

mod support;

use std::{collections::HashMap, path::Path, time::Duration};

use gateway::Config;

/// `variable "name" { default = … }` literals of terraform/envs/prod.
fn terraform_defaults() -> HashMap<String, hcl::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../terraform/envs/prod/variables.tf");
    let text = std::fs::read_to_string(&path).expect("terraform/envs/prod/variables.tf exists");
    let body: hcl::Body = hcl::from_str(&text).expect("variables.tf parses as HCL");
    body.blocks()
        .filter(|b| b.identifier() == "variable")
        .filter_map(|b| {
            let name = b.labels().first()?.as_str().to_string();
            let default = b.body().attributes().find(|a| a.key() == "default")?;
            let value: hcl::Value = default.expr().clone().into();
            Some((name, value))
        })
        .collect()
}

fn int(vars: &HashMap<String, hcl::Value>, name: &str) -> u64 {
    vars.get(name)
        .and_then(|v| v.as_u64())
        .unwrap_or_else(|| panic!("terraform variable {name} has an integer default"))
}

#[tokio::test]
async fn terraform_agrees_with_the_gateway_defaults() {
    let vars = terraform_defaults();
    let config = Config::default();
    let secs = |ms: u64| Duration::from_millis(ms).as_secs();

    assert_eq!(
        int(&vars, "gateway_port"),
        u64::from(config.listen.port()),
        "listener port"
    );
    assert_eq!(
        int(&vars, "gateway_heartbeat_ms"),
        config.session.heartbeat_send_ms,
        "heart-beat interval"
    );
    assert!(
        int(&vars, "alb_idle_timeout_seconds") > 2 * secs(config.session.heartbeat_send_ms),
        "ALB idle timeout must exceed twice the server heart-beat"
    );
    assert_eq!(
        int(&vars, "gateway_drain_delay_seconds"),
        secs(config.drain.drain_delay_ms),
        "drain delay"
    );
    assert_eq!(
        int(&vars, "gateway_drain_window_seconds"),
        secs(config.drain.drain_window_ms),
        "drain window"
    );
    assert!(
        int(&vars, "gateway_deregistration_delay_seconds")
            >= secs(config.drain.drain_delay_ms + config.drain.drain_window_ms),
        "deregistration delay must cover drain delay + window"
    );
    let detection = int(&vars, "gateway_health_check_interval_seconds")
        * int(&vars, "gateway_health_check_unhealthy_threshold");
    assert!(
        secs(config.drain.drain_delay_ms) > detection,
        "drain delay ({} s) must exceed the ALB's unhealthy detection time ({detection} s)",
        secs(config.drain.drain_delay_ms)
    );

    // Rebalancing: the environment's defaults are the gateway's.
    assert_eq!(
        vars["gateway_rebalance"].as_bool(),
        Some(config.fleet.rebalance),
        "rebalance switch"
    );
    for (name, want) in [
        ("gateway_rebalance_margin", config.fleet.rebalance_margin),
        ("gateway_rebalance_rate", config.fleet.rebalance_rate),
    ] {
        assert_eq!(vars[name].as_f64(), Some(want), "{name}");
    }
    assert_eq!(
        int(&vars, "gateway_rebalance_interval_ms"),
        config.fleet.rebalance_interval_ms,
        "rebalance interval"
    );
    assert_eq!(
        int(&vars, "gateway_fleet_report_ms"),
        config.fleet.fleet_report_ms,
        "fleet report interval"
    );

    // The health-check path is the gateway's readiness endpoint.
    let path = vars["gateway_health_check_path"]
        .as_str()
        .expect("string path")
        .to_string();
    let gw = support::start(&[]).await;
    let response = support::http_get(gw.addr, &path, "").await;
    assert!(
        response.starts_with("HTTP/1.1 200") && response.contains(r#""status":"ready""#),
        "{path}: {response}"
    );
}

//! The demo: an IVR flow bound to number 1000, ready to call right after the first start.

use anyhow::Context;
use store::Store;
use uuid::Uuid;

/// The demo's number.
pub(crate) const NUMBER: &str = "1000";

/// The demo IVR, as a user would write it.
pub(crate) const FLOW: &str = include_str!("../../../examples/demo-ivr.json");

/// Create the demo flow and bind it to [`NUMBER`] unless the number is already bound.
pub(crate) async fn ensure(store: &dyn Store, fresh_token: Option<&str>) -> anyhow::Result<()> {
    if store.number_for_inbound(NUMBER).await?.is_some() {
        return Ok(());
    }
    let account = match fresh_token {
        Some(token) => store.account_by_token(token).await?,
        None => store.first_account().await?,
    }
    .context("no account to put the demo in")?;
    let value: serde_json::Value = serde_json::from_str(FLOW).context("demo flow is not JSON")?;
    let mut actions = value
        .get("actions")
        .cloned()
        .context("demo flow has no actions")?;
    flow::assign_ids(&mut actions, || Uuid::new_v4().to_string());
    if let Err(errors) = flow::compile(&actions) {
        anyhow::bail!("the demo flow does not compile: {errors:?}");
    }
    let now = store::utc_now();
    let flow_id = Uuid::new_v4();
    store
        .create_flow(&store::FlowRecord {
            id: flow_id,
            account_id: account.id,
            name: "demo ivr".into(),
            detail: "created by voxflow serve --demo".into(),
            actions,
            on_complete_flow_id: None,
            tm_create: now.clone(),
            tm_update: now.clone(),
        })
        .await?;
    store
        .create_number(&store::NumberRecord {
            id: Uuid::new_v4(),
            account_id: account.id,
            number: NUMBER.into(),
            call_flow_id: flow_id,
            name: "demo".into(),
            tm_create: now.clone(),
            tm_update: now,
        })
        .await?;
    tracing::info!(%flow_id, number = NUMBER, "demo flow created");
    Ok(())
}

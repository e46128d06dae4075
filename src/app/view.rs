//! `kappalog view add|list|rm`: a running node's named views over its HTTP API
//! (`PUT`/`GET`/`DELETE /views`), so the node that owns the definitions file changes it.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use http_body_util::Full;
use hyper::{header, Method, Request};
use kappalog::cli::{ViewAddArgs, ViewCommand, ViewNodeArgs};
use kappalog::query::client::{self, percent_encode, EXCHANGE_TIMEOUT_MS};

pub fn view(command: ViewCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match command {
        ViewCommand::Add(args) => runtime.block_on(add(args)),
        ViewCommand::List(node) => runtime.block_on(list(node)),
        ViewCommand::Rm { name, node } => runtime.block_on(remove(&name, node)),
    }
}

async fn exchange(
    node: &ViewNodeArgs,
    method: Method,
    path: &str,
    body: Option<String>,
) -> anyhow::Result<serde_json::Value> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::ACCEPT, "application/json");
    if let Some(token) = &node.token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .context("building the request")?;
    let text = tokio::time::timeout(
        Duration::from_millis(EXCHANGE_TIMEOUT_MS),
        client::send(&node.url, request),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the node did not answer in time"))??;
    serde_json::from_str(&text).with_context(|| format!("the node's answer is not JSON: {text}"))
}

async fn add(args: ViewAddArgs) -> anyhow::Result<ExitCode> {
    let params: serde_json::Map<String, serde_json::Value> = args
        .params
        .into_iter()
        .map(|(name, value)| (name, serde_json::Value::String(value)))
        .collect();
    let body = serde_json::json!({
        "sql": args.sql,
        "indexes": args.indexes,
        "description": args.description,
        "params": params,
    });
    let path = format!("/views/{}", percent_encode(&args.name));
    let view = exchange(&args.node, Method::PUT, &path, Some(body.to_string())).await?;
    println!("{view}");
    Ok(ExitCode::SUCCESS)
}

async fn list(node: ViewNodeArgs) -> anyhow::Result<ExitCode> {
    let listed = exchange(&node, Method::GET, "/views", None).await?;
    let views = listed["views"].as_array().cloned().unwrap_or_default();
    for view in views {
        let state = match view["state"].as_str() {
            Some("building") => format!(
                "building {:.0}%",
                view["progress"].as_f64().unwrap_or(0.0) * 100.0
            ),
            Some("failed") => format!("failed: {}", view["reason"].as_str().unwrap_or("")),
            other => other.unwrap_or("?").to_owned(),
        };
        println!(
            "{}\t{}\t{}",
            view["name"].as_str().unwrap_or("?"),
            state,
            view["description"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn remove(name: &str, node: ViewNodeArgs) -> anyhow::Result<ExitCode> {
    let path = format!("/views/{}", percent_encode(name));
    exchange(&node, Method::DELETE, &path, None).await?;
    println!("dropped view {name}");
    Ok(ExitCode::SUCCESS)
}

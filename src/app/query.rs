//! `kappalog query`: one statement over a data directory's index (read-only, beside a
//! node that may be writing it) or over a running node's `POST /query`.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context;
use kappalog::cli::{QueryArgs, QueryFormat};
use kappalog::node::NodeConfig;
use kappalog::query::{self, Answer, QueryConfig, QueryConnection, Statement};

pub fn query(config: &NodeConfig, args: QueryArgs) -> anyhow::Result<ExitCode> {
    let statement = Statement {
        sql: args.sql,
        params: args.params,
    };
    let (answer, json) = match &args.url {
        Some(url) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?
            .block_on(query::client::ask(url, &statement))?,
        None => {
            let path = query::index_path(&config.data_dir);
            let mut connection = QueryConnection::open(&path, &QueryConfig::default())?;
            let answer = connection.run(&statement)?;
            let json = serde_json::to_string(&answer).context("writing the answer")?;
            (answer, json)
        }
    };
    eprintln!("as_of {}", answer.as_of);
    print(&answer, &json, args.format).context("writing the answer")?;
    Ok(ExitCode::SUCCESS)
}

fn print(answer: &Answer, json: &str, format: QueryFormat) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match format {
        QueryFormat::Json => writeln!(out, "{json}")?,
        QueryFormat::Csv => query::render::write_csv(answer, &mut out)?,
        QueryFormat::Table => query::render::write_table(answer, &mut out)?,
    }
    out.flush()
}

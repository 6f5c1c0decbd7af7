//! `stan-bench`: throughput of a NATS or NATS Streaming server.

use stan_runtime::bench;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.is_empty()).collect();
    let st = match bench::parse_args(&args) {
        Ok(st) => st,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let result = rt.block_on(async {
        if st.core {
            bench::core::run(&st.addr(), &st).await
        } else {
            bench::stan::run(&st).await
        }
    });
    match result {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("stan-bench: {e}");
            std::process::exit(1);
        }
    }
}

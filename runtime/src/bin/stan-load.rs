//! `stan-load`: a long run of many streaming clients; fails on errors, loss or growing
//! server memory.

use stan_runtime::load;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.is_empty()).collect();
    let st = match load::parse_args(&args) {
        Ok(st) => st,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    // One runtime multiplexes every client.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    match rt.block_on(load::run::run(&st)) {
        Ok(summary) => {
            println!("{summary}");
            if !summary.passed() {
                println!("stan-load: FAILED");
                std::process::exit(1);
            }
            println!("stan-load: passed");
        }
        Err(e) => {
            eprintln!("stan-load: {e}");
            std::process::exit(1);
        }
    }
}

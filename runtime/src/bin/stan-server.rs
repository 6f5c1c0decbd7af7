//! `stan-server`: the NATS Streaming compatible server.

use stan_runtime::cli::{self, Command};
use stan_runtime::logger::{Logger, OpenError};

fn main() {
    stan_runtime::memory::configure_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match cli::parse(&args) {
        Ok(Command::Run(opts)) => opts,
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            return;
        }
        Ok(Command::Version) => {
            println!("{}", cli::VERSION_LINE);
            return;
        }
        Ok(Command::HelpTls) => {
            print!("{}", cli::TLS_USAGE);
            return;
        }
        Ok(Command::Signal { command, pid }) => {
            match stan_runtime::server::send_signal(&command, pid.as_deref()) {
                Ok(()) => return,
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            }
        }
        Err(exit) => {
            eprint!("{}", exit.stderr);
            print!("{}", exit.stdout);
            std::process::exit(exit.code);
        }
    };
    if opts.check_config {
        // Every file was read and checked while the options were built.
        let file = opts.config_file.as_deref().unwrap_or_default();
        eprintln!("stan-server: configuration file {file} is valid");
        return;
    }
    let log = match Logger::new(opts.log_config()) {
        Ok(l) => l,
        Err(OpenError::Syslog(e)) => {
            // As the NATS server reports it: Go's standard logger, then exit 1.
            eprintln!("{} {e}", chrono::Local::now().format("%Y/%m/%d %H:%M:%S"));
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("unable to open log file: {e}");
            std::process::exit(1);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    runtime.spawn(stan_runtime::memory::release_free_memory_periodically());
    let code = runtime.block_on(stan_runtime::server::run(*opts, log, args));
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}

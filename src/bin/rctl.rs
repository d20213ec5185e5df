//! rctl: the client. Parses the command line and exits with rctl's documented code.

use clap::Parser;

fn main() {
    let cli = rcd::ctl::Cli::parse();
    let code = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(rcd::ctl::run(cli)),
        Err(e) => {
            eprintln!("rctl: cannot start: {e}");
            rcd::ctl::exit::FAILED
        }
    };
    std::process::exit(code);
}

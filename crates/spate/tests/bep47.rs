//! BEP 47 file attributes from a torrent libtorrent made: an executable file comes out
//! executable and a symlink is made, pointing (relatively) at its target inside the
//! download folder, after spate downloads the torrent from a libtorrent seeder.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Result};
use common::{expect_ok, lt_port, spate};
use testkit::data::write_random_file;
use testkit::{
    free_port, require_tools, run_ok, Deadline, Libtorrent, TestDir, SYSTEM_PYTHON, TEST_TIMEOUT,
};

#[test]
fn executable_bits_and_symlinks_from_a_libtorrent_torrent() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("bep47")?;
    let src = td.sub("src")?;
    let top = src.join("kit");
    std::fs::create_dir_all(top.join("bin"))?;
    write_random_file(&top.join("bin/tool"), 200_000, 7)?;
    std::fs::set_permissions(top.join("bin/tool"), std::fs::Permissions::from_mode(0o755))?;
    write_random_file(&top.join("readme.txt"), 5_000, 8)?;
    std::os::unix::fs::symlink("bin/tool", top.join("tool"))?;
    let torrent = td.join("kit.torrent");
    let mut c = Command::new(SYSTEM_PYTHON);
    c.arg(Libtorrent::script())
        .args(["create"])
        .arg(&top)
        .arg(&torrent)
        .args(["16384", "--private", "--symlinks"]);
    run_ok("lt-create", c, td.path(), Duration::from_secs(60))?;

    let seeder = Libtorrent::seed(&torrent, &src, free_port()).spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let out = td.sub("out")?;
    let down = spate()
        .download(&torrent, &out)
        .peers(&[lt_port(&seeder)?])
        .spawn(&td)?;
    expect_ok(&down, &[&seeder], &dl)?;
    let kit = out.join("kit");
    ensure!(
        std::fs::read(kit.join("bin/tool"))? == std::fs::read(top.join("bin/tool"))?,
        "the tool's bytes differ"
    );
    let mode = std::fs::metadata(kit.join("bin/tool"))?
        .permissions()
        .mode();
    ensure!(mode & 0o100 != 0, "bin/tool is not executable: {mode:o}");
    let mode = std::fs::metadata(kit.join("readme.txt"))?
        .permissions()
        .mode();
    ensure!(mode & 0o111 == 0, "readme.txt became executable: {mode:o}");
    ensure!(
        std::fs::read_link(kit.join("tool"))? == std::path::Path::new("bin/tool"),
        "tool links to {:?}",
        std::fs::read_link(kit.join("tool"))
    );
    ensure!(std::fs::read(kit.join("tool"))? == std::fs::read(kit.join("bin/tool"))?);
    Ok(())
}

use std::path::Path;

use anyhow::Result;
use zlayer_image::ImageStore;

use crate::cli::ImageCommand;
use crate::output::render;

pub fn image(data: &Path, cmd: ImageCommand) -> Result<i32> {
    let store = ImageStore::open(data.join("images"))?;
    match cmd {
        ImageCommand::Import { file } => {
            for name in store.import(&file)? {
                println!("imported {name}");
            }
        }
        ImageCommand::Ls { output } => {
            let rows = store.list()?;
            render(output, &rows, &["NAME", "DIGEST", "LAYERS", "SIZE"], |i| {
                vec![
                    i.name.clone(),
                    i.digest.chars().take(19).collect(),
                    i.layers.to_string(),
                    format!("{:.1}MB", i.size as f64 / 1e6),
                ]
            })?;
        }
        ImageCommand::Rm { name } => println!("removed {}", store.remove(&name)?),
    }
    Ok(0)
}

//! The input arguments shared by commands that take images: positional images/folders,
//! `--files-from`, `--follow-links`, `--include-hidden`, `--exclude`. Flatten [`InputArgs`] into a
//! command's arguments and call [`InputArgs::list`].

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use dolg::inputs::{list_inputs, Hidden, Links, Listing, WalkOptions};

#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// Images and/or folders. A folder is searched recursively for images
    /// (.jpg/.jpeg/.png/.webp and the other supported formats, in any case), in sorted order,
    /// at its position among the inputs; a file is taken as given, whatever its extension.
    #[arg(value_name = "IMAGE_OR_DIR", required_unless_present = "files_from")]
    pub inputs: Vec<PathBuf>,

    /// Also read inputs from FILE, one path per line ('-' reads standard input), after those given
    /// as arguments. Lines are taken whole except for the line ending; blank lines are skipped;
    /// relative paths are relative to the current directory; folders are searched like arguments.
    #[arg(long, value_name = "FILE")]
    pub files_from: Option<PathBuf>,

    /// Follow symbolic links found inside folders (links named directly are always followed).
    /// A link leading back to a folder it is inside of is reported and skipped, and every file
    /// is listed once however many links lead to it.
    #[arg(long)]
    pub follow_links: bool,

    /// Include hidden files and enter hidden folders (names starting with '.') found inside
    /// folders; they are skipped by default. Hidden inputs named directly are always taken.
    #[arg(long)]
    pub include_hidden: bool,

    /// Leave out files and folders matching GLOB (repeatable). A pattern is matched against the
    /// file name ('*_thumb.jpg', 'thumbs') and against the path relative to the folder given as
    /// input ('raw/**', '2019/*/drafts'); an input named directly is matched on its path as given.
    /// '*' and '?' do not cross '/', '**' spans folders; matching is case-sensitive; an excluded
    /// folder is not entered.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
}

impl InputArgs {
    /// The library options these flags stand for.
    pub fn options(&self) -> WalkOptions {
        WalkOptions {
            links: if self.follow_links { Links::Follow } else { Links::Skip },
            hidden: if self.include_hidden { Hidden::Include } else { Hidden::Skip },
            exclude: self.exclude.clone(),
            files_from: self.files_from.clone(),
        }
    }

    /// Expand the inputs into the list of images. Each path skipped because of an error (an
    /// unreadable folder, a link loop, a broken link) is printed to stderr as
    /// `warning: skipped <path>: <error>`; the walk goes on without it. A bad glob or an
    /// unreadable `--files-from` list is an error.
    pub fn list(&self) -> anyhow::Result<Listing> {
        let listing = list_inputs(&self.inputs, &self.options()).context("listing the inputs")?;
        for p in &listing.problems {
            eprintln!("warning: skipped {}: {}", p.path.display(), p.error);
        }
        Ok(listing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        inputs: InputArgs,
    }

    #[test]
    fn flags_map_to_options() {
        let c = Cmd::try_parse_from(["t", "a", "--exclude", "*.png", "b", "--follow-links", "--include-hidden", "--exclude", "raw/**", "--files-from", "-"])
            .unwrap();
        assert_eq!(c.inputs.inputs, [PathBuf::from("a"), PathBuf::from("b")]);
        let o = c.inputs.options();
        assert_eq!(o.links, Links::Follow);
        assert_eq!(o.hidden, Hidden::Include);
        assert_eq!(o.exclude, ["*.png", "raw/**"]);
        assert_eq!(o.files_from, Some(PathBuf::from("-")));
        let d = Cmd::try_parse_from(["t", "a"]).unwrap().inputs.options();
        assert_eq!(d, WalkOptions { exclude: vec![], files_from: None, ..WalkOptions::default() });
        assert_eq!((d.links, d.hidden), (Links::Skip, Hidden::Skip));
    }

    #[test]
    fn an_input_or_a_list_is_required() {
        assert!(Cmd::try_parse_from(["t"]).is_err());
        assert!(Cmd::try_parse_from(["t", "--files-from", "list.txt"]).unwrap().inputs.inputs.is_empty());
    }
}

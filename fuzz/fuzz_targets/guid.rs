//! Plex guids and external-id (`Guid` array) entries: every line of the input as a guid, and all
//! of them as one `Guid` array.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexsync::payload::{ExternalIds, GuidEntry, PlexGuid};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let entries: Vec<GuidEntry> = text
        .lines()
        .map(|line| {
            let parsed = PlexGuid::parse(line);
            let _ = parsed.legacy_show_ids();
            GuidEntry { id: line.to_string() }
        })
        .collect();
    let ids = ExternalIds::from_guid_array(&entries);
    if let Some(imdb) = &ids.imdb {
        assert!(imdb.starts_with("tt"), "{imdb}");
    }
});

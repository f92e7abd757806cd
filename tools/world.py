"""The test world of fixtures/world.json, which the Rust tests (plexsync::testing::fixtures) read
too: alice's Plex server, The Office with its real TMDB/TVDB/IMDb ids, and the payloads Plex,
plex.tv and TMDB send. Every accessor returns a fresh copy the caller may change.
"""

import copy
import json
from pathlib import Path

WORLD = json.loads((Path(__file__).resolve().parent.parent / "fixtures" / "world.json").read_text())

# The uuid of alice's Plex Media Server, basement-nas (what its webhooks carry).
SERVER_UUID = WORLD["plex_webhooks"]["episode_scrobble"]["Server"]["uuid"]


def webhook(name):
    """A Plex webhook payload: episode_scrobble, legacy_episode_scrobble, movie_scrobble, ..."""
    return copy.deepcopy(WORLD["plex_webhooks"][name])


def sender_webhook(sender, name):
    """A Jellyfin or Emby payload (sender "jellyfin" / "emby"): playback_stop, user_data_saved,
    mark_played, movie_playback_stop."""
    return copy.deepcopy(WORLD[f"{sender}_webhooks"][name])


def response(service, path):
    """What `GET path` returns from plex_server, plex_tv or tmdb; None when the world has none."""
    return copy.deepcopy(WORLD[service].get(path))


def office_episode_scrobble(number):
    """alice's scrobble of The Office S01E<number>: the pilot's payload with that episode's title,
    Plex rating key and Guid ids (from the TMDB season and the episode's external ids)."""
    payload = webhook("episode_scrobble")
    episode = response("tmdb", "/3/tv/2316/season/1")["episodes"][number - 1]
    ext = response("tmdb", f"/3/tv/2316/season/1/episode/{number}/external_ids")
    rating_key = str(48212 + number)
    payload["Metadata"].update({
        "index": number, "title": episode["name"], "ratingKey": rating_key,
        "key": f"/library/metadata/{rating_key}", "originallyAvailableAt": episode["air_date"],
        "Guid": [{"id": f"imdb://{ext['imdb_id']}"}, {"id": f"tmdb://{episode['id']}"},
                 {"id": f"tvdb://{ext['tvdb_id']}"}],
    })
    return payload


def office_tracker_seasons():
    """The Office (US) season 1 as the tracker stores it (tvshows.seasons), nothing watched."""
    season = response("tmdb", "/3/tv/2316/season/1")
    episodes = [{"episodeNumber": e["episode_number"], "title": e["name"], "airDate": e["air_date"],
                 "watched": False, "dateWatched": None} for e in season["episodes"]]
    return [{"seasonNumber": season["season_number"], "episodes": episodes}]

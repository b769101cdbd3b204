"""A seeded demo crawl in exactly the product's input format.

Writes ``<out>/crawl/movies.jsonl`` (TMDB list results and ``/movie/{id}`` details),
``<out>/crawl/posters/*.jpg`` (real JPEGs whose colours and shapes depend on the movie's
genres, so image features carry signal), ``<out>/crawl/_crawl.json`` (the crawl date) and
``<out>/ratings.csv`` (customers with genre tastes, long-tailed item popularity, timestamps),
plus one of every bad-input case ingest or embed must quarantine (see :data:`BAD_CASES`).
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from hybridrec import schemas as S
from hybridrec.config import DemoConf
from hybridrec.crawl.layout import FAILURES, MANIFEST, MOVIES, POSTERS, local_poster
from hybridrec.crawl.tmdb import GENRES
from hybridrec.errors import UserError

# Share of movies in each genre, roughly TMDB's skew (drama, comedy, thriller largest).
GENRE_WEIGHTS: dict[str, float] = {
    "Drama": 0.42, "Comedy": 0.28, "Thriller": 0.22, "Action": 0.17, "Romance": 0.14, "Horror": 0.12,
    "Crime": 0.12, "Adventure": 0.10, "Family": 0.08, "Science Fiction": 0.08, "Mystery": 0.07,
    "Fantasy": 0.07, "Animation": 0.06, "Documentary": 0.06, "History": 0.04, "Music": 0.04,
    "War": 0.03, "TV Movie": 0.03, "Western": 0.02,
}
# Per-genre visual signature: an RGB colour and a shape drawn on the poster.
_SHAPES = ["circle", "square", "triangle", "hstripes", "vstripes", "dots", "diamond", "ring", "cross"]

# Bad-input cases: kind -> (quarantine stage, a substring of the reason it gives). The last one
# is a valid image that ingest keeps and the embed stage refuses (embed.max_aspect_ratio).
BAD_CASES: dict[str, tuple[str, str]] = {
    "malformed_json": (S.STAGE_INGEST_ITEMS, "malformed JSON"),
    "no_id": (S.STAGE_INGEST_ITEMS, "record has no id"),
    "bad_id": (S.STAGE_INGEST_ITEMS, "id is not a positive integer"),
    "unknown_genre": (S.STAGE_INGEST_ITEMS, "unknown genre id 10769"),
    "duplicate_record": (S.STAGE_INGEST_ITEMS, "duplicate record for id"),
    "missing_poster": (S.STAGE_INGEST_POSTERS, "poster file missing"),
    "empty_poster": (S.STAGE_INGEST_POSTERS, "poster file is empty"),
    "truncated_poster": (S.STAGE_INGEST_POSTERS, "image could not be decoded"),
    "not_an_image": (S.STAGE_INGEST_POSTERS, "not an image file"),
    "oversized_poster": (S.STAGE_INGEST_POSTERS, "poster file too large"),
    "unknown_item_rating": (S.STAGE_INGEST_RATINGS, "unknown item_id"),
    "out_of_range_rating": (S.STAGE_INGEST_RATINGS, "outside ["),
    "non_numeric_rating": (S.STAGE_INGEST_RATINGS, "rating is not a number"),
    "bad_customer": (S.STAGE_INGEST_RATINGS, "customer_id is not an integer"),
    "bad_timestamp": (S.STAGE_INGEST_RATINGS, "timestamp is not epoch seconds"),
    "future_timestamp": (S.STAGE_INGEST_RATINGS, "is more than a day after the crawl date"),
    "ancient_timestamp": (S.STAGE_INGEST_RATINGS, "is before 1900-01-01"),
    "crawl_miss": (S.STAGE_INGEST_CRAWL, "the crawler could not fetch it: HTTP 404"),
    "duplicate_rating": (S.STAGE_INGEST_RATINGS, "duplicate rating"),
    "banner_poster": (S.STAGE_EMBED_POSTERS, "is beyond embed.max_aspect_ratio"),
}

_ADJ = ["Silent", "Broken", "Golden", "Last", "Hidden", "Midnight", "Crimson", "Lost", "Wild", "Frozen",
        "Burning", "Secret", "Distant", "Electric", "Hollow", "Iron", "Paper", "Savage", "Quiet", "Bright"]
_NOUN = ["River", "Empire", "Promise", "Garden", "Horizon", "Witness", "Kingdom", "Letter", "Storm", "Summer",
         "Machine", "Harbor", "Frontier", "Shadow", "Voyage", "Island", "Heart", "Signal", "Crown", "Road"]
# A title drawn twice gets the next of these (then a number), so every demo title is unique: a list
# never seems to recommend the very film the customer rated.
_SUBTITLES = ["of Ashes", "at Dawn", "in Winter", "Returns", "of the North", "Beyond", "Reborn", "at Sea",
              "of Glass", "in Exile", "Rising", "of Embers", "at Noon", "Unbound", "of the South", "Forever"]
_LANGS = ["en"] * 8 + ["fr", "es", "ja", "ko", "de", "it", "hi"]


@dataclass(frozen=True)
class DemoCrawl:
    crawl_dir: Path
    ratings_path: Path
    movies: int
    ratings: int
    crawl_date: dt.date


def _genre_style(rng: np.random.Generator) -> dict[int, tuple[tuple[int, int, int], str]]:
    style = {}
    for i, gid in enumerate(sorted(GENRES)):
        hue = rng.integers(30, 226, size=3)
        style[gid] = ((int(hue[0]), int(hue[1]), int(hue[2])), _SHAPES[i % len(_SHAPES)])
    return style


def render_poster(genre_ids: list[int], width: int, height: int, rng: np.random.Generator,
                  style: dict[int, tuple[tuple[int, int, int], str]]) -> bytes:
    """A JPEG poster: background in the first genre's colour, one shape per genre, noise."""
    base = np.array(style[genre_ids[0]][0], dtype=np.float32)
    grad = np.linspace(0.7, 1.2, height, dtype=np.float32)[:, None, None]
    arr = np.clip(base[None, None, :] * grad + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    draw = ImageDraw.Draw(img)
    for k, gid in enumerate(genre_ids):
        color, shape = style[gid]
        inv = tuple(255 - c for c in color)
        cx = int(width * (0.3 + 0.4 * rng.random()))
        cy = int(height * (0.2 + 0.25 * k + 0.1 * rng.random()))
        r = int(min(width, height) * (0.18 + 0.08 * rng.random()))
        box = (cx - r, cy - r, cx + r, cy + r)
        if shape == "circle":
            draw.ellipse(box, fill=inv)
        elif shape == "square":
            draw.rectangle(box, fill=inv)
        elif shape == "triangle":
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=inv)
        elif shape == "hstripes":
            for y in range(0, height, 8):
                draw.line([(0, y), (width, y)], fill=inv, width=2)
        elif shape == "vstripes":
            for x in range(0, width, 8):
                draw.line([(x, 0), (x, height)], fill=inv, width=2)
        elif shape == "dots":
            for _ in range(25):
                x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
                draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=inv)
        elif shape == "diamond":
            draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=inv)
        elif shape == "ring":
            draw.ellipse(box, outline=inv, width=max(2, r // 4))
        else:
            draw.rectangle((cx - r, cy - r // 4, cx + r, cy + r // 4), fill=inv)
            draw.rectangle((cx - r // 4, cy - r, cx + r // 4, cy + r), fill=inv)
    # a title band, as real posters have
    band = int(height * 0.85)
    draw.rectangle((0, band, width, band + max(4, height // 14)), fill=(240, 240, 230))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _poster_name(rng: np.random.Generator) -> str:
    chars = np.array(list(string.ascii_letters + string.digits))
    return "/" + "".join(rng.choice(chars, 27)) + ".jpg"


def _sample_genres(rng: np.random.Generator) -> list[int]:
    names = list(GENRE_WEIGHTS)
    p = np.array([GENRE_WEIGHTS[n] for n in names])
    k = int(rng.choice([1, 2, 3, 4], p=[0.38, 0.37, 0.20, 0.05]))
    picked = rng.choice(len(names), size=k, replace=False, p=p / p.sum())
    by_name = {v: g for g, v in GENRES.items()}
    return [by_name[names[i]] for i in picked]


def unique_title(base: str, used: dict[str, int]) -> str:
    """``base`` the first time; then ``base`` with the next subtitle, then with a number."""
    n = used.get(base, 0)
    used[base] = n + 1
    if n == 0:
        return base
    return f"{base} {_SUBTITLES[n - 1]}" if n <= len(_SUBTITLES) else f"{base} {n + 1}"


def _record(item_id: int, genre_ids: list[int], rng: np.random.Generator, popularity: float,
            poster_path: str | None, details: bool, used_titles: dict[str, int] | None = None) -> dict[str, Any]:
    title = unique_title(f"The {rng.choice(_ADJ)} {rng.choice(_NOUN)}", {} if used_titles is None else used_titles)
    release = dt.date(2012, 1, 1) + dt.timedelta(days=int(rng.integers(0, 6 * 365)))
    rec: dict[str, Any] = {
        "adult": False,
        "backdrop_path": _poster_name(rng),
        "id": item_id,
        "original_language": str(rng.choice(_LANGS)),
        "original_title": title,
        "overview": f"A {GENRES[genre_ids[0]].lower()} story about a {str(rng.choice(_NOUN)).lower()}.",
        "popularity": round(popularity, 3),
        "poster_path": poster_path,
        "release_date": release.isoformat(),
        "title": title,
        "video": False,
        "vote_average": round(float(np.clip(rng.normal(6.3, 1.0), 1, 10)), 1),
        "vote_count": int(popularity * 40),
    }
    if details:
        rec["genres"] = [{"id": g, "name": GENRES[g]} for g in genre_ids]
        rec["runtime"] = int(rng.integers(80, 160))
        rec["status"] = "Released"
    else:
        rec["genre_ids"] = genre_ids
    return rec


def generate_demo(out_dir: str | Path, movies: int = 2500, customers: int = 800,
                  mean_ratings_per_customer: int = 40, poster_size: tuple[int, int] = (96, 144),
                  seed: int = 7, bad_inputs: bool = True, max_poster_bytes: int = 2 * 1024 * 1024,
                  crawl_date: dt.date = dt.date(2026, 11, 1)) -> DemoCrawl:
    """Write a demo crawl and ratings under ``out_dir`` (deterministic for a given seed)."""
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    crawl = out / "crawl"
    posters = crawl / POSTERS
    posters.mkdir(parents=True, exist_ok=True)
    style = _genre_style(rng)
    width, height = poster_size
    ids = rng.choice(np.arange(10_000, 900_000), size=movies, replace=False)
    popularity = rng.pareto(1.0, size=movies) + 1.0  # long tail
    item_genres: list[list[int]] = []
    lines: list[str] = []
    used_titles: dict[str, int] = {}
    for i, item_id in enumerate(ids):
        genres = _sample_genres(rng)
        item_genres.append(genres)
        path = _poster_name(rng)
        local_poster(crawl, path).write_bytes(render_poster(genres, width, height, rng, style))
        rec = _record(int(item_id), genres, rng, float(popularity[i]), path, details=rng.random() < 0.2,
                      used_titles=used_titles)
        lines.append(json.dumps(rec))

    # ratings: customers with genre tastes, items by popularity x taste
    gid_index = {g: k for k, g in enumerate(sorted(GENRES))}
    membership = np.zeros((movies, len(GENRES)))
    for i, genres in enumerate(item_genres):
        membership[i, [gid_index[g] for g in genres]] = 1.0
    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    rows: list[list[Any]] = []
    for c in range(customers):
        taste = rng.dirichlet(np.full(len(GENRES), 0.25))
        affinity = membership @ taste / np.maximum(membership.sum(1), 1)
        weight = popularity * (0.05 + affinity * 8)
        n = int(np.clip(rng.lognormal(np.log(mean_ratings_per_customer), 0.6), 5, movies // 2))
        picked = rng.choice(movies, size=n, replace=False, p=weight / weight.sum())
        z = (affinity[picked] - affinity.mean()) / (affinity.std() + 1e-9)
        stars = np.clip(np.rint(3.2 + 0.7 * z + rng.normal(0, 0.8, n)), 1, 5)
        ts = np.sort(t0 + rng.uniform(0, 300 * 86400, n)).astype(np.int64)
        for j, item in enumerate(picked):
            rows.append([1000 + c, int(ids[item]), int(stars[j]), int(ts[j])])

    if bad_inputs:
        lines, rows = _add_bad_inputs(lines, rows, crawl, rng, style, poster_size, max_poster_bytes, ids,
                                      used_titles)
        # crawl_miss: a movie listed on a discover page whose details TMDB no longer has, as the
        # crawler records it
        (crawl / FAILURES).write_text(json.dumps({"request": "/movie/949999", "reason": "HTTP 404 (not found)",
                                                  "at": f"{crawl_date.isoformat()}T03:00:00+00:00"}) + "\n")
    else:
        (crawl / FAILURES).unlink(missing_ok=True)
    (crawl / MOVIES).write_text("\n".join(lines) + "\n")
    (crawl / MANIFEST).write_text(json.dumps({"crawl_date": crawl_date.isoformat(), "source": "hybridrec demo",
                                                   "seed": seed}))
    ratings_path = out / "ratings.csv"
    with ratings_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["customer_id", "item_id", "rating", "timestamp"])
        w.writerows(rows)
    return DemoCrawl(crawl, ratings_path, movies, len(rows), crawl_date)


def _add_bad_inputs(lines: list[str], rows: list[list[Any]], crawl: Path, rng: np.random.Generator,
                    style: dict[int, tuple[tuple[int, int, int], str]], poster_size: tuple[int, int],
                    max_poster_bytes: int, ids: np.ndarray,
                    used_titles: dict[str, int] | None = None) -> tuple[list[str], list[list[Any]]]:
    """One of each BAD_CASES kind, appended to the crawl and ratings."""
    width, height = poster_size
    next_id = 950_000

    def good(genres: list[int], poster: str | None) -> dict[str, Any]:
        nonlocal next_id
        next_id += 1
        return _record(next_id, genres, rng, 1.0, poster, details=False, used_titles=used_titles)

    lines = list(lines)
    lines.append('{"id": 949001, "title": "Broken line", "genre_ids": [18')  # malformed_json
    rec = good([18], None)
    del rec["id"]
    lines.append(json.dumps(rec))  # no_id
    rec = good([35], None)
    rec["id"] = "abc"
    lines.append(json.dumps(rec))  # bad_id
    lines.append(json.dumps(good([18, 10769], None)))  # unknown_genre (TMDB's retired "Foreign")
    dup = json.loads(lines[0])  # duplicate_record: a list result repeated with a changed title
    dup["title"] = dup["title"] + " (re-listed)"
    lines.append(json.dumps(dup))
    lines.append(json.dumps(good([53], "/missingPosterFile000000000.jpg")))  # missing_poster
    p = "/emptyPosterFile0000000000000.jpg"
    local_poster(crawl, p).write_bytes(b"")
    lines.append(json.dumps(good([18], p)))  # empty_poster
    p = "/truncatedPosterFile000000000.jpg"
    full = render_poster([27], width, height, rng, style)
    local_poster(crawl, p).write_bytes(full[: len(full) // 2])
    lines.append(json.dumps(good([27], p)))  # truncated_poster
    p = "/notAnImagePosterFile00000000.jpg"
    local_poster(crawl, p).write_bytes(b"<html><body>404 Not Found</body></html>\n")
    lines.append(json.dumps(good([35], p)))  # not_an_image
    p = "/oversizedPosterFile000000000.jpg"
    big = render_poster([28], width, height, rng, style)
    local_poster(crawl, p).write_bytes(big + b"\0" * (max_poster_bytes + 1 - len(big)))
    lines.append(json.dumps(good([28], p)))  # oversized_poster
    p = "/bannerPosterFile000000000000.jpg"  # a 6:1 strip: a valid JPEG, not a poster for the CNN
    local_poster(crawl, p).write_bytes(render_poster([99], 3 * width, max(4, width // 2), rng, style))
    lines.append(json.dumps(good([99], p)))  # banner_poster

    rows = list(rows)
    known = int(ids[0])
    rows.append([1, 999_999_999, 4, 1735689600])  # unknown_item_rating
    rows.append([1, known, 7, 1735689600])  # out_of_range_rating
    rows.append([1, known, "five", 1735689600])  # non_numeric_rating
    rows.append(["cust-x", known, 3, 1735689600])  # bad_customer
    rows.append([2, known, 3, "yesterday"])  # bad_timestamp
    rows.append([4, known, 3, 100_000_000_000])  # future_timestamp: the year 5138
    rows.append([4, known, 3, "1850-06-01T00:00:00"])  # ancient_timestamp
    rows.append([3, known, 2, 1735689600])  # duplicate_rating: an older copy ...
    rows.append([3, known, 4, 1735776000])  # ... and the newer one that wins
    return lines, rows


def write_demo(demo: DemoConf, max_poster_bytes: int) -> DemoCrawl:
    """Generate the demo crawl ``demo`` describes (overwrites files of the same names); its
    oversized poster is one byte over ``max_poster_bytes`` (ingest.max_poster_bytes)."""
    if not demo.out_dir:
        raise UserError("config key 'demo.out_dir' is empty")
    return generate_demo(demo.out_dir, movies=demo.movies, customers=demo.customers,
                         mean_ratings_per_customer=demo.mean_ratings_per_customer,
                         poster_size=(demo.poster_width, demo.poster_height), seed=demo.seed,
                         bad_inputs=demo.bad_inputs, max_poster_bytes=max_poster_bytes)

"""Training and batch linkage with Splink (Fellegi–Sunter, DuckDB backend, in-process).

The comparisons are the SQL twins of yilian.patients.linkage (same levels, same order), so the
m/u probabilities Splink estimates are exactly what the online matcher applies. Splink and
pandas are imported lazily: the web process never pays for them.

    frame = identity_frame(rows)                 # rows: dicts with name, sex, birth_date, …
    parameters, linker = train(frame)            # u by random sampling, m by EM, prior
    pairs = predict(linker, threshold=…)         # scored candidate pairs (batch linkage)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from yilian.patients import linkage

if TYPE_CHECKING:
    import pandas as pd

# EM may estimate a level as never seen among matches; a floor keeps its weight finite (≈ −33).
PROBABILITY_FLOOR = 1e-10
# Blocking rules that generate the candidate pairs of batch linkage (the online matcher uses the
# same keys through database indexes).
PREDICT_BLOCKS = (
    ("id_number",),
    ("phone",),
    ("pinyin", "birth"),
    ("pinyin", "town"),
    ("birth", "town"),
)


def identity_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """A frame of the derived columns the comparisons read. Each row needs `unique_id` and may
    carry name, sex, birth_date (date), id_number, phone, town and `source_dataset`. Columnar:
    names and ID numbers are derived once per distinct value, so 1,000,000 rows take seconds."""
    import pandas as pd

    raw = pd.DataFrame(list(rows))
    for column in ("name", "sex", "id_number", "phone", "town"):
        if column not in raw:
            raw[column] = ""
        raw[column] = raw[column].fillna("").astype(str)
    if "birth_date" not in raw:
        raw["birth_date"] = None
    frame = pd.DataFrame({"unique_id": raw["unique_id"]})
    names = raw["name"].unique()
    normalised = {n: linkage.normalise_name(n) for n in names}
    frame["name"] = raw["name"].map(normalised).replace("", None)
    frame["pinyin"] = raw["name"].map({n: linkage.name_pinyin(n) for n in names}).replace("", None)
    frame["surname"] = raw["name"].map({n: linkage.surname_pinyin(n) for n in names}).replace("", None)
    frame["given"] = raw["name"].map({n: linkage.given_pinyin(n) for n in names}).fillna("")
    dates = {d: d for d in raw["birth_date"].unique() if d is not None and d == d}  # NaN != NaN
    for column, shape in (("birth", "{:%Y%m%d}"), ("birth_md", "{:%m%d}"), ("birth_dm", "{:%d%m}")):
        frame[column] = raw["birth_date"].map({d: shape.format(d) for d in dates})
    frame["birth_year"] = raw["birth_date"].map({d: d.year for d in dates})
    frame["sex"] = raw["sex"].where(raw["sex"].isin(["1", "2"]), None)
    ids = pd.Series([linkage.id_number_normalised(i) for i in raw["id_number"]], index=raw.index)
    frame["id_number"] = ids.replace("", None)
    frame["id_valid"] = _valid_national_ids(ids)
    frame["phone"] = pd.Series([linkage.phone_key(p) or None for p in raw["phone"]], index=raw.index)
    frame["town"] = raw["town"].replace("", None)
    if "source_dataset" in raw:
        frame["source_dataset"] = raw["source_dataset"]
    return frame


def _valid_national_ids(ids: pd.Series) -> pd.Series:
    """GB 11643 check, vectorised: 17 digits and the right check character (the birth date part
    is not checked here; a number with an impossible date is rare and still fails deterministic
    linking, which calls is_valid_national_id)."""
    import numpy as np
    import pandas as pd

    shaped = ids.str.fullmatch(r"\d{17}[\dX]").fillna(False).to_numpy()
    valid = np.zeros(len(ids), dtype=bool)
    if shaped.any():
        chosen = ids[shaped]
        digits = np.frombuffer("".join(chosen.str[:17]).encode(), dtype=np.uint8).reshape(-1, 17) - ord("0")
        weights = np.array((7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2))
        expected = np.array(list("10X98765432"))[(digits * weights).sum(axis=1) % 11]
        valid[np.flatnonzero(shaped)] = expected == chosen.str[17].to_numpy()
    return pd.Series(valid, index=ids.index)


def _comparisons() -> list[Any]:
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    jw = linkage.JARO_WINKLER_NAME

    def custom(name: str, null: str, levels: list[tuple[str, str]]) -> Any:
        return cl.CustomComparison(
            output_column_name=name,
            comparison_levels=[
                cll.CustomLevel(null, "null").configure(is_null_level=True),
                *[cll.CustomLevel(sql, label) for sql, label in levels],
                cll.ElseLevel(),
            ],
        )

    return [
        custom(
            "name",
            "name_l IS NULL OR name_r IS NULL",
            [
                ("name_l = name_r", "exact"),
                ("pinyin_l = pinyin_r", "same pinyin"),
                (
                    f"jaro_winkler_similarity(pinyin_l, pinyin_r) >= {jw} AND jaro_winkler_similarity(given_l, given_r) >= {jw}",
                    "pinyin jaro-winkler",
                ),
                ("surname_l = surname_r", "surname"),
            ],
        ),
        custom(
            "birth_date",
            "birth_l IS NULL OR birth_r IS NULL",
            [
                ("birth_l = birth_r", "exact"),
                (
                    "damerau_levenshtein(birth_l, birth_r) <= 1 OR (birth_year_l = birth_year_r AND birth_md_l = birth_dm_r)",
                    "one digit or transposed",
                ),
            ],
        ),
        custom("sex", "sex_l IS NULL OR sex_r IS NULL", [("sex_l = sex_r", "exact")]),
        custom(
            "id_number",
            "id_number_l IS NULL OR id_number_r IS NULL",
            [
                ("id_number_l = id_number_r", "exact"),
                (
                    "(NOT id_valid_l OR NOT id_valid_r) AND damerau_levenshtein(id_number_l, id_number_r) <= 1",
                    "one edit, check digit fails",
                ),
                ("NOT (id_valid_l AND id_valid_r)", "different, one invalid"),
            ],
        ),
        custom("phone", "phone_l IS NULL OR phone_r IS NULL", [("phone_l = phone_r", "exact")]),
        custom("town", "town_l IS NULL OR town_r IS NULL", [("town_l = town_r", "exact")]),
    ]


def settings(link_type: Any = "dedupe_only") -> Any:
    from splink import SettingsCreator, block_on

    return SettingsCreator(
        link_type=link_type,
        comparisons=_comparisons(),
        blocking_rules_to_generate_predictions=[block_on(*keys) for keys in PREDICT_BLOCKS],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )


def linker_for(frames: list[pd.DataFrame], link_type: str = "dedupe_only", model: Any = None) -> Any:
    from splink import DuckDBAPI, Linker

    db_api = DuckDBAPI()
    registered = [db_api.register(frame) for frame in frames]
    return Linker(registered if len(registered) > 1 else registered[0], model or settings(link_type), log_level="WARNING")


# Levels whose m expectation maximisation cannot learn: twins agree on surname, birth date, phone
# and town, so EM files them with the duplicates. Domain knowledge fixes how often the *same*
# person shows a different given name (almost never: twins fall to the review queue instead of
# being linked) or two different valid national IDs (never: GB 11643's check character catches
# every single-digit typo and transposition, so two valid numbers are two people — a veto).
FIXED_M = {("name", "surname"): 1e-6, ("name", "else"): 1e-6, ("id_number", "else"): 1e-10}


def _fix_m(model: dict[str, Any]) -> dict[str, Any]:
    for comparison in model["comparisons"]:
        levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
        fixed = {}
        for level in levels:
            label = "else" if level["sql_condition"].strip().upper() == "ELSE" else level.get("label_for_charts")
            key = (comparison["output_column_name"], label)
            if key in FIXED_M:
                fixed[id(level)] = FIXED_M[key]
        if not fixed:
            continue  # the floor below still applies
        free = [lv for lv in levels if id(lv) not in fixed]
        free_mass = sum(float(lv.get("m_probability") or 0.0) for lv in free) or 1.0
        scale = (1.0 - sum(fixed.values())) / free_mass
        for level in levels:
            level["m_probability"] = fixed.get(id(level), float(level.get("m_probability") or 0.0) * scale)
    for comparison in model["comparisons"]:  # Splink refuses zeros when it reloads the model
        for level in comparison["comparison_levels"]:
            for probability in ("m_probability", "u_probability"):
                if level.get(probability) is not None:
                    level[probability] = max(float(level[probability]), PROBABILITY_FLOOR)
    return model


def train(
    frames: list[pd.DataFrame], *, link_type: str = "dedupe_only", u_pairs: float = 2e6, seed: int = 7
) -> tuple[dict[str, Any], Any]:
    """Estimate the model: the prior from the national-ID rule, u by random sampling, m by two
    expectation-maximisation passes (blocked on birth date, then on pinyin name). Returns the
    parameters in the stored format (linkage.DEFAULT_PARAMETERS) and the trained linker."""
    from splink import block_on

    linker = linker_for(frames, link_type)
    linker.training.estimate_probability_two_random_records_match(
        ["l.id_number = r.id_number AND l.id_valid AND r.id_valid"], recall=0.8
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=u_pairs, seed=seed)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("birth"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("pinyin"))
    linker = linker_for(frames, link_type, model=_fix_m(linker.misc.save_model_to_json()))
    return parameters_from_linker(linker), linker


def parameters_from_linker(linker: Any) -> dict[str, Any]:
    """Splink's model JSON → {prior, comparisons: {name: {m: [level 0 …], u: [...]}}}."""
    model = linker.misc.save_model_to_json()
    comparisons: dict[str, Any] = {}
    for comparison in model["comparisons"]:
        levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
        levels.reverse()  # Splink lists the most similar level first; ours count up from "else"
        comparisons[comparison["output_column_name"]] = {
            "m": [max(float(lv.get("m_probability") or 0.0), PROBABILITY_FLOOR) for lv in levels],
            "u": [max(float(lv.get("u_probability") or 0.0), PROBABILITY_FLOOR) for lv in levels],
        }
    return {"prior": float(model["probability_two_random_records_match"]), "comparisons": comparisons}


def predict(linker: Any, *, threshold: float) -> pd.DataFrame:
    """Scored pairs at or above `threshold` (match weight) as a frame: unique_id_l, unique_id_r,
    match_weight (and source_dataset_l/_r for link jobs)."""
    return linker.inference.predict(threshold_match_weight=threshold).as_pandas_dataframe()

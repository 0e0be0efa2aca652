"""The model catalog: the packaged data file, user overrides and LiteLLM maps; name resolution.

Load order, later sources winning per model: LiteLLM map (optional, thousands of models,
source "litellm") < packaged `data/catalog.yaml` (curated, source "catalog") < the user's
override file (source "override").
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
from collections.abc import Iterable, Mapping
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tokenrt_pricing import litellm
from tokenrt_pricing.model import (
    CatalogError,
    Match,
    ModelEntry,
    ModelNotFound,
    ModelPrice,
    Resolved,
    TokenPrices,
    usd_per_mtok,
)

PROVIDERS = ("openai", "anthropic", "gemini", "openai_compatible", "simulator")
TIERS = ("economy", "standard", "premium")
SIM_PREFIX = "sim/"
# Dated snapshot suffixes: -2024-08-06, -20250514, -0613, @20250514.
_SNAPSHOT = re.compile(r"^(?P<base>.+?)(?:[-@](?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}))$")
# Prefixes naming the model maker's own API (same prices as the catalog). Other hosts
# (azure/, bedrock/, together_ai/...) price the same model differently: they resolve only
# through their own entries (e.g. from a LiteLLM map), never to the maker's price.
SAME_PRICE_PREFIXES = frozenset({"openai", "anthropic", "gemini", "google", "models",
                                 "deepseek", "mistral"})
_PRICE_FIELDS = ("input", "cached_input", "cache_write", "output", "reasoning")


class Catalog:
    """An immutable set of model entries with case-insensitive name and alias lookup."""

    def __init__(self, entries: Iterable[ModelEntry], version: str,
                 aliases: Mapping[str, str] | None = None) -> None:
        self.version = version
        self._entries: dict[str, ModelEntry] = {}
        for entry in entries:
            self._entries[entry.name.lower()] = entry
        self._aliases: dict[str, str] = {}
        for entry in self._entries.values():
            for alias in entry.aliases:
                self._aliases.setdefault(alias.lower(), entry.name.lower())
        for alias, target in (aliases or {}).items():
            if target.lower() not in self._entries:
                raise CatalogError(f"alias {alias!r} points to unknown model {target!r}")
            self._aliases[alias.lower()] = target.lower()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._entries

    def entries(self) -> list[ModelEntry]:
        return sorted(self._entries.values(), key=lambda e: (e.vendor, e.name))

    def get(self, name: str) -> ModelEntry:
        return self.resolve(name).entry

    def resolve(self, name: str) -> Resolved:
        """Resolve a name; raises ModelNotFound with the closest names when nothing fits."""
        requested = name.strip()
        if not requested:
            raise ModelNotFound(name, [])
        if requested.lower().startswith(SIM_PREFIX):
            inner = self.resolve(requested[len(SIM_PREFIX):])
            entry = dataclasses.replace(inner.entry, name=SIM_PREFIX + inner.entry.name,
                                        provider="simulator", aliases=())
            return dataclasses.replace(inner, entry=entry, requested=requested,
                                       provider_model_id=inner.provider_model_id)
        found = self._lookup(requested)
        if found is not None:
            return found
        raise ModelNotFound(requested, self.suggest(requested))

    def _lookup(self, name: str) -> Resolved | None:
        key = name.lower()
        if key.startswith("ft:"):
            base = key[3:].split(":", 1)[0]
            inner = self._lookup(base) if base else None
            if inner is None:
                return None
            return Resolved(inner.entry, Match.FINE_TUNE, name, name, fine_tuned=True)
        entry = self._entries.get(key)
        if entry is not None:
            return Resolved(entry, Match.EXACT, name, entry.provider_model_id or entry.name)
        target = self._aliases.get(key)
        if target is not None:
            entry = self._entries[target]
            return Resolved(entry, Match.ALIAS, name, entry.provider_model_id or name)
        m = _SNAPSHOT.match(key)
        if m:
            inner = self._lookup(m.group("base"))
            if inner is not None and inner.match in (Match.EXACT, Match.ALIAS):
                return Resolved(inner.entry, Match.SNAPSHOT, name, name)
        prefix, slash, rest = key.partition("/")
        if slash and prefix in SAME_PRICE_PREFIXES:
            inner = self._lookup(rest)
            if inner is not None:
                return Resolved(inner.entry, Match.ALIAS, name, inner.provider_model_id)
        return None

    def suggest(self, name: str, n: int = 5) -> list[str]:
        key = name.lower().removeprefix("ft:").split(":", 1)[0]
        names = list(self._entries)
        close = difflib.get_close_matches(key, names, n=n, cutoff=0.6)
        if not close:
            head = key.split("-", 1)[0]
            close = sorted(k for k in names if k.startswith(head))[:n]
        return [self._entries[k].name for k in close]

    def search(self, provider: str = "", name_contains: str = "",
               include_deprecated: bool = False) -> list[ModelEntry]:
        needle = name_contains.lower()
        return [e for e in self.entries()
                if (not provider or e.provider == provider)
                and (not needle or needle in e.name.lower())
                and (include_deprecated or not e.deprecated)]


# ------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------

def load(overrides_path: str | Path | None = None,
         litellm_path: str | Path | None = None) -> Catalog:
    """The packaged catalog, below the user's overrides, above an optional LiteLLM map."""
    text = resources.files("tokenrt_pricing").joinpath("data/catalog.yaml").read_text()
    data = _yaml(text, "data/catalog.yaml")
    version = str(data.get("version") or "")
    if not version:
        raise CatalogError("data/catalog.yaml: `version` is missing")
    entries: dict[str, ModelEntry] = {}
    if litellm_path:
        lite_version = f"litellm:{_digest(Path(litellm_path).read_bytes())}"
        for entry in litellm.entries(litellm.read_map(litellm_path), lite_version):
            entries[entry.name.lower()] = entry
        version = f"{version}+{lite_version}"
    for i, raw in enumerate(_models(data, "data/catalog.yaml")):
        entry = parse_entry(raw, version=str(data["version"]), source="catalog",
                            where=f"data/catalog.yaml: models[{i}]")
        entries[entry.name.lower()] = entry
    aliases: dict[str, str] = {}
    if overrides_path:
        path = Path(overrides_path)
        try:
            raw_text = path.read_text()
        except OSError as exc:
            raise CatalogError(f"cannot read price overrides {path}: {exc.strerror}") from None
        override_version = f"override:{_digest(raw_text.encode())}"
        version = f"{version}+{override_version}"
        over = _yaml(raw_text, str(path))
        for i, raw in enumerate(_models(over, str(path))):
            where = f"{path}: models[{i}]"
            name = str(raw.get("name") or "")
            base = entries.get(name.lower())
            entry = (_apply(base, raw, override_version, where) if base is not None
                     else parse_entry(raw, override_version, "override", where))
            entries[entry.name.lower()] = entry
        raw_aliases = over.get("aliases") or {}
        if not isinstance(raw_aliases, dict):
            raise CatalogError(f"{path}: `aliases` must map alias names to model names")
        aliases = {str(k): str(v) for k, v in raw_aliases.items()}
    return Catalog(entries.values(), version, aliases)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def _yaml(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{where}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CatalogError(f"{where}: expected a mapping with `models:`")
    return data


def _models(data: dict[str, Any], where: str) -> list[dict[str, Any]]:
    models = data.get("models") or []
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        raise CatalogError(f"{where}: `models` must be a list of mappings")
    return models


def _prices(raw: Any, where: str, base: TokenPrices | None = None) -> TokenPrices:
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: expected a mapping of prices in USD per 1M tokens")
    unknown = set(raw) - set(_PRICE_FIELDS) - {"above_tokens", "reference"}
    if unknown:
        raise CatalogError(f"{where}: unknown price field(s) {sorted(unknown)}; "
                           f"known: {', '.join(_PRICE_FIELDS)}")
    got = {k: usd_per_mtok(v, f"{where}.{k}") for k, v in raw.items() if k in _PRICE_FIELDS}
    if base is not None:
        merged = dataclasses.asdict(base)
        merged.update(got)
        return TokenPrices(**merged)
    if "input" not in got or "output" not in got:
        raise CatalogError(f"{where}: `input` and `output` prices are required")
    return TokenPrices(
        input=got["input"], output=got["output"],
        cached_input=got.get("cached_input", got["input"]),
        cache_write=got.get("cache_write", got["input"]),
        reasoning=got.get("reasoning", got["output"]),
    )


def _price(raw: dict[str, Any], version: str, source: str, where: str,
           prefix: str = "") -> ModelPrice | None:
    key = "prices" if not prefix else prefix
    if raw.get(key) is None:
        return None
    standard = _prices(raw[key], f"{where}.{key}")
    batch_key = "batch" if not prefix else f"{prefix}_batch"
    batch = _prices(raw[batch_key], f"{where}.{batch_key}") if raw.get(batch_key) else None
    long_raw = raw.get("long_context") if not prefix else None
    threshold, long, long_batch = 0, None, None
    if long_raw:
        threshold = _int(long_raw.get("above_tokens"), f"{where}.long_context.above_tokens")
        long = _prices(long_raw, f"{where}.long_context")
        if raw.get("long_context_batch"):
            long_batch = _prices(raw["long_context_batch"], f"{where}.long_context_batch")
    return ModelPrice(standard, batch, threshold, long, long_batch, version, source)


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CatalogError(f"{where}: expected a whole number >= 0, got {value!r}")
    return value


def _strs(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise CatalogError(f"{where}: expected a list")
    return tuple(str(v) for v in value)


def parse_entry(raw: dict[str, Any], version: str, source: str, where: str) -> ModelEntry:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise CatalogError(f"{where}: `name` is required")
    where = f"{where} ({name})"
    provider = str(raw.get("provider", ""))
    if provider not in PROVIDERS:
        raise CatalogError(f"{where}: provider {provider!r} is not one of {PROVIDERS}")
    tier = str(raw.get("tier", "standard"))
    if tier not in TIERS:
        raise CatalogError(f"{where}: tier {tier!r} is not one of {TIERS}")
    price = _price(raw, version, source, where)
    if price is None:
        raise CatalogError(f"{where}: `prices` is required")
    fine_tune = _price(raw, version, source, where, prefix="fine_tune")
    sunset = raw.get("sunset")
    return ModelEntry(
        name=name, provider=provider, vendor=str(raw.get("vendor", "")),
        tokenizer=str(raw.get("tokenizer") or litellm.guess_tokenizer(name, provider)),
        context_window=_int(raw.get("context_window"), f"{where}.context_window"),
        max_output=_int(raw.get("max_output", 0), f"{where}.max_output"),
        default_output=_int(raw.get("default_output", 0), f"{where}.default_output"),
        price=price,
        capabilities=frozenset(_strs(raw.get("capabilities"), f"{where}.capabilities")),
        tier=tier, aliases=_strs(raw.get("aliases"), f"{where}.aliases"),
        degrade_to=str(raw.get("degrade_to", "")), deprecated=bool(raw.get("deprecated", False)),
        sunset=date.fromisoformat(str(sunset)) if sunset else None,
        replacement=str(raw.get("replacement", "")),
        fine_tune_price=fine_tune,
        provider_model_id=str(raw.get("provider_model_id", "")),
        reference=str(raw.get("reference", "")),
        fine_tune_reference=str((raw.get("fine_tune") or {}).get("reference", "")),
    )


def _apply(base: ModelEntry, raw: dict[str, Any], version: str, where: str) -> ModelEntry:
    """An override of an existing model: the fields given replace the catalog's."""
    where = f"{where} ({base.name})"
    changes: dict[str, Any] = {}
    for key in ("context_window", "max_output", "default_output"):
        if key in raw:
            changes[key] = _int(raw[key], f"{where}.{key}")
    for key in ("tokenizer", "vendor", "degrade_to", "replacement", "provider_model_id"):
        if key in raw:
            changes[key] = str(raw[key])
    if "provider" in raw:
        if raw["provider"] not in PROVIDERS:
            raise CatalogError(f"{where}: provider {raw['provider']!r} is not one of {PROVIDERS}")
        changes["provider"] = raw["provider"]
    if "aliases" in raw:
        changes["aliases"] = base.aliases + _strs(raw["aliases"], f"{where}.aliases")
    if "deprecated" in raw:
        changes["deprecated"] = bool(raw["deprecated"])
    price = base.price
    if "prices" in raw:
        price = dataclasses.replace(price, standard=_prices(raw["prices"], f"{where}.prices",
                                                            price.standard))
    if "batch" in raw:
        price = dataclasses.replace(price, batch=_prices(raw["batch"], f"{where}.batch",
                                                         price.batch))
    if "long_context" in raw:
        lc = raw["long_context"]
        price = dataclasses.replace(
            price, long_context=_prices(lc, f"{where}.long_context", price.long_context),
            long_context_threshold=_int(lc.get("above_tokens", price.long_context_threshold),
                                        f"{where}.long_context.above_tokens"))
    if any(k in raw for k in ("prices", "batch", "long_context")):
        price = dataclasses.replace(price, version=version, source="override")
    changes["price"] = price
    return dataclasses.replace(base, **changes)

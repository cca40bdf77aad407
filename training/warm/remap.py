"""Id maps merged by raw id, and the tables that follow them.

A warm start trains on a new log whose indices differ from the version it starts from: new users
and items, and (through the item file) new categories and attribute tags. Every table indexed by an
id is rebuilt in the new index space: an old row is copied to its id's new index; a new id gets a
fresh row. Tables keep their special rows at the end (the padding item, the unknown user, the
unknown category, the attribute pad), and those are copied as they are.

A new item's fresh row starts from what its metadata says: the mean, over its category and
attribute tags, of the mean row of the known items that carry that tag (the teacher's item tower
averages attribute embeddings the same way). An item whose tags no known item carries keeps the
cold initialisation. Why: a new product with a zero or random row scores like nothing the model
knows and is not recommended until it has been bought often enough to be learned; one that starts
near its brand and category is recommendable after its first retrain.
"""

from __future__ import annotations

import numpy as np
import torch

from training.data.types import Catalog


def index_map(old_ids: np.ndarray, new_ids: np.ndarray) -> np.ndarray:
    """int64 [len(new_ids)]: each new id's index in `old_ids`, -1 where the old map lacks it."""
    old_ids = np.asarray(old_ids).astype(str)
    new_ids = np.asarray(new_ids).astype(str)
    out = np.full(len(new_ids), -1, dtype=np.int64)
    if len(old_ids) == 0 or len(new_ids) == 0:
        return out
    order = np.argsort(old_ids, kind="stable")
    pos = np.minimum(np.searchsorted(old_ids, new_ids, sorter=order), len(old_ids) - 1)
    found = old_ids[order[pos]] == new_ids
    out[found] = order[pos[found]]
    return out


def remap_table(old: torch.Tensor, mapping: np.ndarray, fresh: torch.Tensor) -> torch.Tensor:
    """A table over the new ids: row i = old[mapping[i]] where mapping[i] >= 0, else fresh[i]; the
    special rows after the ids (fresh has them too) are old's own.

    old: (n_old + s, D); mapping: int64 [n_new]; fresh: (n_new + s, D), the new model's initial table.
    """
    n_new, special = len(mapping), fresh.shape[0] - len(mapping)
    if (
        old.shape[0] - special < 0
        or old.shape[1:] != fresh.shape[1:]
        or int(mapping.max(initial=-1)) >= old.shape[0] - special
    ):
        raise ValueError(
            f"table of shape {tuple(old.shape)} does not fit {tuple(fresh.shape)} with {special} special rows"
        )
    out = fresh.detach().clone()
    known = torch.from_numpy(np.flatnonzero(mapping >= 0))
    out[known] = old[torch.from_numpy(mapping[mapping >= 0])].to(out.dtype)
    if special:
        out[n_new:] = old[old.shape[0] - special :].to(out.dtype)
    return out


def item_tags(catalog: Catalog) -> tuple[np.ndarray, np.ndarray]:
    """(indptr int64 [n_items + 1], tag int64 [nnz]): each item's category (tag c) and attribute
    tags (n_categories + a), as one CSR over the catalog."""
    indptr, attrs = catalog.attribute_rows()
    counts = np.diff(indptr) + (catalog.category >= 0)
    out_indptr = np.zeros(catalog.n_items + 1, np.int64)
    np.cumsum(counts, out=out_indptr[1:])
    tags = np.empty(int(out_indptr[-1]), np.int64)
    has_cat = catalog.category >= 0
    tags[out_indptr[:-1][has_cat]] = catalog.category[has_cat]
    offset = np.repeat(out_indptr[:-1] + has_cat - indptr[:-1], np.diff(indptr))
    tags[offset + np.arange(len(attrs))] = len(catalog.categories) + attrs
    return out_indptr, tags


def tag_initialised_rows(
    rows: torch.Tensor, mapping: np.ndarray, catalog: Catalog
) -> tuple[torch.Tensor, np.ndarray]:
    """Rows for the new items (mapping == -1) from their tags, and bool [n_new]: which got one.

    rows: (n_old, D), the old table's id rows; mapping: int64 [n_items] (index_map of the item ids);
    catalog: the new catalog (its tags in the new index space). Returns (n_items, D): the tag mean
    where an item is new and at least one of its tags is carried by a known item, zeros elsewhere.
    """
    indptr, tags = item_tags(catalog)
    n_tags = len(catalog.categories) + len(catalog.attributes)
    item_of_tag = np.repeat(np.arange(catalog.n_items), np.diff(indptr))
    known = mapping[item_of_tag] >= 0
    d = rows.shape[1]
    sums = torch.zeros(n_tags, d, dtype=rows.dtype)
    counts = np.bincount(tags[known], minlength=n_tags).astype(np.float64)
    sums.index_add_(0, torch.from_numpy(tags[known]), rows[torch.from_numpy(mapping[item_of_tag[known]])])
    has = counts > 0
    centroids = sums / torch.from_numpy(np.maximum(counts, 1.0)).to(rows.dtype)[:, None]
    new_tag = (mapping[item_of_tag] < 0) & has[tags]  # a new item's tag with a centroid
    out = torch.zeros(catalog.n_items, d, dtype=rows.dtype)
    per_item = np.bincount(item_of_tag[new_tag], minlength=catalog.n_items).astype(np.float64)
    out.index_add_(0, torch.from_numpy(item_of_tag[new_tag]), centroids[torch.from_numpy(tags[new_tag])])
    got = per_item > 0
    out[torch.from_numpy(np.flatnonzero(got))] /= torch.from_numpy(per_item[got]).to(rows.dtype)[:, None]
    return out, got


def remap_item_table(
    old: torch.Tensor, mapping: np.ndarray, fresh: torch.Tensor, catalog: Catalog
) -> tuple[torch.Tensor, int]:
    """`remap_table` for an item table whose new rows start from their tags (`tag_initialised_rows`);
    returns the table and how many new items got a tag-initialised row."""
    out = remap_table(old, mapping, fresh)
    special = fresh.shape[0] - len(mapping)
    rows, got = tag_initialised_rows(old[: old.shape[0] - special].detach(), mapping, catalog)
    picked = torch.from_numpy(np.flatnonzero(got))
    out[picked] = rows[picked].to(out.dtype)
    return out, int(got.sum())

"""Whether lbforaging can always place every food on a field (checked before an LBF env is
built)."""

from __future__ import annotations

import functools

# Cells that a food rules out for later foods: lbforaging's spawn_food refuses a cell with food
# in its 3x3 neighbourhood or 2 cells away in its row or column, i.e. |dr| + |dc| <= 2.
_FOOD_ZONE = [(dr, dc) for dr in range(-2, 3) for dc in range(-2, 3) if abs(dr) + abs(dc) <= 2]
_PLACEMENT_SEARCH_NODES = 100_000


@functools.lru_cache(maxsize=256)
def _blocked_placement(
    rows: int, cols: int, players: int, foods: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]] | None:
    """Players and earlier foods that leave a later food no cell, or None if there are none.

    lbforaging places the players first, each on a random free cell, then every food on a random
    inner cell (off the border) that holds no player and lies more than 2 steps (|dr| + |dc|)
    from every food placed before it, giving up after 1000 draws. Placement can fail exactly when
    some legal choice of at most ``foods - 1`` foods, together with at most ``players`` player
    cells, covers every inner cell. Returns ``(food cells, player cells)`` of such a choice,
    found by a depth-first search over the first uncovered inner cell (a player stands on it, or
    one of the <= 13 foods whose zone holds it is placed). None also when the search does not
    settle within its budget (many foods on a large field: random placement is then far from
    the worst case, and ``reset`` still warns if food falls short).
    """
    # counted before the cells are listed: a large field must not cost memory here
    if (rows - 2) * (cols - 2) > players + len(_FOOD_ZONE) * (foods - 1):
        return None  # even a full zone per earlier food plus every player leaves a cell
    inner = [(r, c) for r in range(1, rows - 1) for c in range(1, cols - 1)]
    index = {cell: i for i, cell in enumerate(inner)}
    zone = [0] * len(inner)  # bit mask of the inner cells each food would rule out
    near: list[list[int]] = [[] for _ in inner]  # food cells whose zone holds this cell
    for i, (r, c) in enumerate(inner):
        for dr, dc in _FOOD_ZONE:
            j = index.get((r + dr, c + dc))
            if j is not None:
                zone[i] |= 1 << j
                near[i].append(j)
    every = (1 << len(inner)) - 1
    failed: set[tuple[int, int, int]] = set()
    nodes = 0

    def search(taken: int, food_left: int, player_left: int) -> tuple[list[int], list[int]] | None:
        nonlocal nodes
        free = every & ~taken
        if not free:
            return [], []
        key = (taken, food_left, player_left)
        if key in failed or free.bit_count() > len(_FOOD_ZONE) * food_left + player_left:
            return None
        nodes += 1
        if nodes > _PLACEMENT_SEARCH_NODES:
            raise TimeoutError
        cell = (free & -free).bit_length() - 1  # the first uncovered inner cell
        if food_left:
            for food in near[cell]:
                if not (taken >> food) & 1:  # legal: off the players and earlier zones
                    found = search(taken | zone[food], food_left - 1, player_left)
                    if found is not None:
                        return [food, *found[0]], found[1]
        if player_left:
            found = search(taken | 1 << cell, food_left, player_left - 1)
            if found is not None:
                return found[0], [cell, *found[1]]
        failed.add(key)
        return None

    try:
        found = search(0, foods - 1, players)
    except TimeoutError:
        return None
    if found is None:
        return None
    return [inner[i] for i in found[0]], [inner[i] for i in found[1]]


def _check_placement(rows: int, cols: int, players: int, foods: int) -> None:
    """Refuse fields where lbforaging can fail to place all foods (see _blocked_placement)."""
    blocked = _blocked_placement(rows, cols, players, foods)
    if blocked is None:
        return
    food_cells, player_cells = blocked
    example = " with ".join(
        f"a {noun} on {cells[0]}" if len(cells) == 1 else f"{noun}s on {', '.join(map(str, cells))}"
        for noun, cells in (("food", food_cells), ("player", player_cells))
        if cells
    )
    raise ValueError(
        f"players={players} and max_num_food={foods} on a {rows}x{cols} field cannot always be "
        f"placed: lbforaging puts each food on a free inner cell (rows 1-{rows - 2}, cols "
        f"1-{cols - 2}) more than 2 steps (|dr|+|dc|) from earlier foods, and {example} would "
        f"leave food {len(food_cells) + 1} no such cell (lbforaging then spawns fewer foods; an "
        "episode without food ends after one step). Criterion: every food must find a cell "
        "whatever cells the players and earlier foods took; use a larger field, fewer players "
        "or fewer foods"
    )

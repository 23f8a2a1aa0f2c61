"""Star-graph path finding (spec §2.1): given the shuffled edges of a star graph, a source and a goal, output the
path from source to goal as a list of edges.

Three variants, generated locally with a fixed seed (no download): `star_easy` (the original `star-small`),
`star_medium` and `star_hard`. Splits are train 50 000 / validation 100 / test 5 000.
"""

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm


@dataclass(frozen=True)
class StarGraphSpec:
    """Parameters of one star-graph variant and the block sizes its experiments use."""

    name: str
    generator: str  # "simple" or "asymmetric"
    degree: int
    num_nodes: int  # node labels are 0 .. num_nodes-1 (the tokenizer's number vocabulary)
    input_block_size: int
    block_size: int
    path_length: int = 5  # simple: nodes on the source-goal path
    min_arm_length: int = 0  # asymmetric: nodes per arm, centre included
    max_arm_length: int = 0
    min_plan_length: int = 0  # asymmetric: nodes that must follow the centre on every arm


STAR_VARIANTS: dict[str, StarGraphSpec] = {
    "star_easy": StarGraphSpec(
        "star_easy", "simple", degree=3, num_nodes=20, input_block_size=28, block_size=14, path_length=5
    ),
    "star_medium": StarGraphSpec(
        "star_medium",
        "asymmetric",
        degree=3,
        num_nodes=20,
        input_block_size=36,
        block_size=16,
        min_arm_length=3,
        max_arm_length=6,
        min_plan_length=2,
    ),
    "star_hard": StarGraphSpec(
        "star_hard",
        "asymmetric",
        degree=5,
        num_nodes=56,
        input_block_size=116,
        block_size=28,
        min_arm_length=6,
        max_arm_length=12,
        min_plan_length=5,
    ),
}

SPLIT_SIZES: dict[str, int] = {"train": 50_000, "validation": 100, "test": 5_000}
SEED = 42


def simple_star_graph(rng: np.random.Generator, spec: StarGraphSpec) -> dict:
    """Source and goal joined by a path of `path_length` nodes; `degree - 1` more arms of as many new nodes
    leave the source. All nodes distinct (easy: 13 nodes, 12 edges)."""
    arm_nodes = spec.path_length - 1  # nodes after the source on every arm
    total = 1 + spec.degree * arm_nodes
    nodes = [int(n) for n in rng.choice(spec.num_nodes, size=total, replace=False)]
    source, arms = nodes[0], [nodes[1 + a * arm_nodes : 1 + (a + 1) * arm_nodes] for a in range(spec.degree)]
    path = [source, *arms[0]]
    edges = []
    for arm in arms:
        chain = [source, *arm]
        edges += [[chain[i], chain[i + 1]] for i in range(len(chain) - 1)]
    return {"edges": edges, "source": source, "goal": path[-1], "path": path}


def asymmetric_star_graph(rng: np.random.Generator, spec: StarGraphSpec) -> dict:
    """`degree` chains of random length that all pass through one centre node; the centre sits at a random index
    leaving at least `min_plan_length` nodes after it. Source/goal are the ends of arm 0, the path is arm 0."""
    lengths = [int(x) for x in rng.integers(spec.min_arm_length, spec.max_arm_length + 1, size=spec.degree)]
    total = sum(lengths) - spec.degree + 1  # the centre is shared
    nodes = [int(n) for n in rng.choice(spec.num_nodes, size=total, replace=False)]
    centre, rest = nodes[0], iter(nodes[1:])
    arms = []
    for length in lengths:
        centre_index = int(rng.integers(0, length - spec.min_plan_length))
        arms.append([centre if i == centre_index else next(rest) for i in range(length)])
    edges = [[arm[i], arm[i + 1]] for arm in arms for i in range(len(arm) - 1)]
    return {"edges": edges, "source": arms[0][0], "goal": arms[0][-1], "path": arms[0]}


def star_example(rng: np.random.Generator, spec: StarGraphSpec) -> dict:
    graph = (simple_star_graph if spec.generator == "simple" else asymmetric_star_graph)(rng, spec)
    edges = graph["edges"]
    order = rng.permutation(len(edges))
    edge_list = [edges[i] for i in order]
    path = graph["path"]
    prompt = [*[n for edge in edge_list for n in edge], graph["source"], graph["goal"]]
    target = [n for i in range(len(path) - 1) for n in (path[i], path[i + 1])]
    return {
        "edge_list": edge_list,
        "source": graph["source"],
        "goal": graph["goal"],
        "path": path,
        "prompt": " ".join(map(str, prompt)),
        "target": " ".join(map(str, target)),
    }


def generate_star_splits(
    name: str, split_sizes: dict[str, int] | None = None, seed: int = SEED, progress: bool = True
) -> dict[str, list[dict]]:
    """All splits of a variant as lists of examples; the same seed gives the same data."""
    if name not in STAR_VARIANTS:
        raise ValueError(f"Unknown star-graph variant {name!r}; choose one of {sorted(STAR_VARIANTS)}.")
    spec = STAR_VARIANTS[name]
    sizes = split_sizes or SPLIT_SIZES
    rng = np.random.default_rng(seed)
    splits = {}
    with tqdm(total=sum(sizes.values()), desc=f"Generating {name}", disable=not progress) as bar:
        for split, size in sizes.items():
            examples = []
            for _ in range(size):
                examples.append(star_example(rng, spec))
                bar.update(1)
            splits[split] = examples
    return splits


__all__ = ["StarGraphSpec", "STAR_VARIANTS", "SPLIT_SIZES", "generate_star_splits", "star_example"]

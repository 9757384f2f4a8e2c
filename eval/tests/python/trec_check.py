"""Independent scoring of Rosetta's TREC run files with pytrec_eval (trec_eval's own code).

Usage: trec_check.py DIR [corpus]
With `corpus`, qrels queries are scored against the whole corpus (the benchmark's
`pool: corpus`) instead of their language's candidates. DIR holds qrels.txt, doc_langs.tsv and query_langs.tsv (id<TAB>lang), and the run files
Rosetta wrote: multilingual.run and pairs/{q}-{c}.run (lareqa) or {lang}.run (qrels).
Scores in the run files are replaced by the inverse of the written rank, so pytrec_eval sees
exactly Rosetta's ranking (its own tie-breaking never comes into play). Judgements are limited
to the pool of each run (the candidates of its corpus languages), as in Rosetta's settings.
Prints JSON: per run, the mean of each measure over the queries with a relevant candidate in
the pool, and (multilingual) the mean rank distance per query language.
"""
import collections
import json
import os
import sys

import numpy as np
import pytrec_eval


def read_tsv(path):
    with open(path) as f:
        return dict(line.rstrip("\n").split("\t") for line in f if line.strip())


def read_run(path):
    run = collections.defaultdict(dict)
    with open(path) as f:
        for line in f:
            qid, _, doc, rank, _, _ = line.split()
            run[qid][doc] = 1.0 / int(rank)
    return run


def score(qrels, run, pool_langs, doc_lang, measures):
    pooled = {
        q: {d: r for d, r in docs.items() if doc_lang[d] in pool_langs}
        for q, docs in qrels.items()
    }
    pooled = {q: docs for q, docs in pooled.items() if any(r > 0 for r in docs.values()) and q in run}
    evaluator = pytrec_eval.RelevanceEvaluator(pooled, measures)
    return evaluator.evaluate({q: run[q] for q in pooled}), pooled


def main(root, pool="language"):
    doc_lang = read_tsv(os.path.join(root, "doc_langs.tsv"))
    query_lang = read_tsv(os.path.join(root, "query_langs.tsv"))
    qrels = collections.defaultdict(dict)
    with open(os.path.join(root, "qrels.txt")) as f:
        for line in f:
            qid, _, doc, rel = line.split()
            qrels[qid][doc] = int(rel)
    out = {"pairs": {}, "multilingual": {}, "qrels": {}}
    langs = sorted(set(doc_lang.values()) | set(query_lang.values()))
    pairs = os.path.join(root, "pairs")
    for name in sorted(os.listdir(pairs)) if os.path.isdir(pairs) else []:
        ql, cl = name[: -len(".run")].split("-")
        res, _ = score(qrels, read_run(os.path.join(pairs, name)), {cl}, doc_lang, {"map", "recall.1", "ndcg_cut.10"})
        if res:
            out["pairs"][f"{ql}-{cl}"] = {
                "map": sum(r["map"] for r in res.values()) / len(res),
                "recall_1": sum(r["recall_1"] for r in res.values()) / len(res),
                "ndcg_cut_10": sum(r["ndcg_cut_10"] for r in res.values()) / len(res),
                "n": len(res),
            }
    multi = os.path.join(root, "multilingual.run")
    if os.path.exists(multi):
        run = read_run(multi)
        res, pooled = score(qrels, run, set(langs), doc_lang, {"map", "recall.10", "ndcg_cut.10"})
        # Parallel rank correlation: queries sharing their relevant set are versions of one
        # question; Spearman (numpy, ranks without ties) between versions' orders of that set.
        groups = collections.defaultdict(list)
        for q in res:
            groups[tuple(sorted(d for d, r in pooled[q].items() if r > 0))].append(q)
        per_group = []
        for key, members in groups.items():
            vectors = []
            for q in members:
                order = sorted(run[q], key=lambda d: -run[q][d])
                vectors.append([order.index(d) + 1 for d in key])
            rs = []
            for i in range(len(vectors)):
                for j in range(i + 1, len(vectors)):
                    if len(key) >= 3:
                        a = np.argsort(np.argsort(vectors[i])); b = np.argsort(np.argsort(vectors[j]))
                        if a.std() > 0 and b.std() > 0:
                            rs.append(float(np.corrcoef(a, b)[0, 1]))
            if rs:
                per_group.append(sum(rs) / len(rs))
        out["parallel_rank_correlation"] = sum(per_group) / len(per_group) if per_group else None
        for lang in langs:
            mine = [q for q in res if query_lang[q] == lang]
            if not mine:
                continue
            distances = []
            for q in mine:
                order = sorted(run[q], key=lambda d: -run[q][d])
                ranks = [order.index(d) + 1 for d, r in pooled[q].items() if r > 0]
                if len(ranks) >= 2:
                    distances.append(max(ranks) - min(ranks))
            out["multilingual"][lang] = {
                "map": sum(res[q]["map"] for q in mine) / len(mine),
                "recall_10": sum(res[q]["recall_10"] for q in mine) / len(mine),
                "ndcg_cut_10": sum(res[q]["ndcg_cut_10"] for q in mine) / len(mine),
                "rank_distance": sum(distances) / len(distances) if distances else None,
                "n": len(mine),
            }
    for lang in langs:
        path = os.path.join(root, f"{lang}.run")
        if not os.path.exists(path):
            continue
        pool_langs = set(langs) if pool == "corpus" else {lang}
        res, _ = score(qrels, read_run(path), pool_langs, doc_lang, {"map", "ndcg_cut.10", "recall.100", "success.20,100"})
        if res:
            out["qrels"][lang] = {
                m: sum(r[m] for r in res.values()) / len(res)
                for m in ("map", "ndcg_cut_10", "recall_100", "success_20", "success_100")
            }
            out["qrels"][lang]["n"] = len(res)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(*sys.argv[1:])

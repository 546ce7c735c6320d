"""Several Ray nodes on one machine (ray.cluster_utils.Cluster): workers spread over nodes, a node lost mid-run."""

from __future__ import annotations

import os
import threading
import time

import pytest
from ray_helpers import RecordNode, RecordWorldSize, Regression

import lightray as pl

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")
pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    # a head that runs no workers, and three one-CPU nodes: two for the workers, one spare
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(3)]
    ray.init(address=cluster.address, logging_level="warning")
    cluster.wait_for_nodes()
    yield cluster, nodes
    ray.shutdown()
    cluster.shutdown()


def test_workers_spread_over_nodes_and_survive_losing_one(tmp_path, cluster):
    cluster, nodes = cluster
    record = tmp_path / "nodes"
    record.mkdir()

    class SlowRegression(Regression):
        def training_step(self, batch, batch_idx):
            time.sleep(0.2)  # long enough for the node to be removed mid-run
            return super().training_step(batch, batch_idx)

    def remove_rank1_node():
        path = record / "node-rank1.txt"
        while not path.exists() or not path.read_text():
            time.sleep(0.1)
        time.sleep(0.5)
        node_id = path.read_text()
        victim = next(node for node in nodes if node.node_id == node_id)
        os.replace(path, record / "first-node-rank1.txt")
        cluster.remove_node(victim)

    killer = threading.Thread(target=remove_rank1_node, daemon=True)
    killer.start()
    trainer = pl.Trainer(
        max_epochs=3, num_workers=2, resources_per_worker={"CPU": 1}, placement_strategy="STRICT_SPREAD",
        max_failures=2, storage_path=str(tmp_path / "runs"), name="spread", callbacks=[RecordNode(str(record))],
        enable_progress_bar=False, enable_model_summary=False, logger=False,
    )  # fmt: skip
    trainer.fit(SlowRegression())
    killer.join(timeout=5)

    first = {(record / "first-node-rank1.txt").read_text(), (record / "node-rank0.txt").read_text()}
    assert len(first) == 2  # the two workers started on different nodes
    after = {(record / f"node-rank{r}.txt").read_text() for r in (0, 1)}
    assert len(after) == 2  # and were spread again after the restart ...
    assert (record / "first-node-rank1.txt").read_text() not in after  # ... without the removed node
    assert trainer.global_step == 3 * 64 // 8  # and training finished


def test_elastic_run_keeps_the_global_batch_when_a_node_goes(tmp_path, cluster):
    """With two one-CPU nodes, losing one leaves room for one worker: the run goes on with one."""
    import ray.train

    cluster, nodes = cluster
    alive = [n for n in nodes if n.node_id in {x["NodeID"] for x in ray.nodes() if x["Alive"]}]
    while len(alive) > 2:  # no spare node for this test
        cluster.remove_node(alive.pop())
    record = tmp_path / "nodes"
    record.mkdir()
    sizes = tmp_path / "world_sizes.txt"

    class SlowRegression(Regression):
        def training_step(self, batch, batch_idx):
            time.sleep(0.2)
            return super().training_step(batch, batch_idx)

    def remove_rank1_node():
        path, checkpoint = record / "node-rank1.txt", tmp_path / "runs" / "elastic" / "epoch=0-step=4.ckpt"
        while not path.exists() or not path.read_text() or not checkpoint.exists():
            time.sleep(0.1)
        time.sleep(0.5)
        cluster.remove_node(next(node for node in alive if node.node_id == path.read_text()))

    killer = threading.Thread(target=remove_rank1_node, daemon=True)
    killer.start()
    trainer = pl.Trainer(
        max_epochs=2, scaling_config=ray.train.ScalingConfig(num_workers=(1, 2), resources_per_worker={"CPU": 1}),
        run_config=ray.train.RunConfig(name="elastic", storage_path=str(tmp_path / "runs"),
                                       failure_config=ray.train.FailureConfig(max_failures=2)),
        callbacks=[RecordNode(str(record)), RecordWorldSize(str(sizes)),
                   pl.callbacks.ModelCheckpoint(every_n_train_steps=2, save_top_k=-1)],
        enable_progress_bar=False, enable_model_summary=False, logger=False,
    )  # fmt: skip
    trainer.fit(SlowRegression())
    killer.join(timeout=5)
    starts = [line.split() for line in sizes.read_text().splitlines()]
    assert starts[0][:2] == ["2", "1"] and starts[-1][:2] == ["1", "2"]  # 2 workers, then 1 worker x 2 batches
    assert trainer.global_step == 2 * 64 // 8  # the global batch (8 samples per step) never changed

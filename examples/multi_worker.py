"""Training with focal_op across processes: tf.distribute.MultiWorkerMirroredStrategy.

Run as is, it starts two worker processes on localhost (each gets its TF_CONFIG), trains a
small classifier with focal_op.sparse_softmax_focal_loss in a custom training loop, and checks
that both workers end with the same weights, equal to those of the same training in a single
process (the per-example losses are averaged over the global batch):

    python examples/multi_worker.py               # 2 workers on this machine
    python examples/multi_worker.py --workers 3

On real machines, start the same script on each host with `--worker-index i` and TF_CONFIG
listing every host's address instead (see the README).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys

STEPS = 20
GLOBAL_BATCH = 64


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def train_worker():
    """One worker: TF_CONFIG from the environment; prints its final weights as one JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    import focal_op

    multi_worker = "TF_CONFIG" in os.environ
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if multi_worker else tf.distribute.get_strategy()
    rng = np.random.default_rng(0)  # every worker builds the same data and initial weights
    centers = rng.standard_normal((5, 8)) * 2.0
    labels = rng.choice(5, size=GLOBAL_BATCH * STEPS, p=[0.6, 0.2, 0.1, 0.07, 0.03])
    features = (centers[labels] + rng.standard_normal((labels.size, 8))).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((features, labels)).batch(GLOBAL_BATCH)
    dist_dataset = strategy.experimental_distribute_dataset(dataset)

    with strategy.scope():
        kernel = tf.Variable(rng.standard_normal((8, 5)).astype(np.float32) * 0.1)
        bias = tf.Variable(np.zeros(5, np.float32))
        optimizer = tf.keras.optimizers.SGD(learning_rate=0.5)

    @tf.function
    def step(batch):
        x, y = batch
        with tf.GradientTape() as tape:
            per_example = focal_op.sparse_softmax_focal_loss(y, x @ kernel + bias, gamma=2.0, alpha=0.25)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=GLOBAL_BATCH)
        grads = tape.gradient(loss, [kernel, bias])
        optimizer.apply_gradients(zip(grads, [kernel, bias]))
        return loss

    for batch in dist_dataset:
        per_replica = strategy.run(step, args=(batch,))
        loss = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"] if multi_worker else "single"
    print(json.dumps({"worker": task, "loss": float(loss), "kernel": kernel.numpy().tolist(),
                      "bias": bias.numpy().tolist()}), flush=True)


def launch(workers):
    """Starts `workers` processes on localhost and compares their final weights with each other
    and with the same training in one process without a strategy."""
    ports = free_ports(workers)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    procs = []
    for index in range(workers):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen([sys.executable, __file__, "--worker"], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    single_env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    procs.append(subprocess.Popen([sys.executable, __file__, "--worker"], env=single_env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"a worker failed:\n{err[-3000:]}")
        results.append(json.loads([line for line in out.splitlines() if line.startswith("{")][-1]))
    *worker_results, single = results
    first = worker_results[0]
    agree = all(r["kernel"] == first["kernel"] and r["bias"] == first["bias"] for r in worker_results)
    difference = max(abs(a - b) for row_a, row_b in zip(first["kernel"], single["kernel"])
                     for a, b in zip(row_a, row_b))
    print(f"{workers} workers trained {STEPS} steps; final loss {first['loss']:.4f}; "
          f"weights identical on every worker: {agree}; "
          f"largest difference from one process without a strategy: {difference:.2e}")
    return 0 if agree and difference < 1e-5 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help="run one worker (TF_CONFIG set by the caller)")
    args = parser.parse_args()
    if args.worker:
        train_worker()
    else:
        sys.exit(launch(args.workers))

"""Test helpers for the Flower adapter: an in-process Grid (no SuperLink)."""

import uuid

from flwr.app import Context, Message, RecordDict
from flwr.serverapp import Grid


class InProcessGrid(Grid):
    """Flower's Grid without a SuperLink: a pushed message is handled at once by the ClientApp with the node's
    Context (internal API: message ids are set like flwr's InMemoryGrid does; pinned to flwr 1.41.0)."""

    def __init__(self, client_app, n, run_config):
        self.app, self.replies = client_app, {}
        # node ids deliberately unrelated to partition ids, so the strategy must learn the mapping
        self.nodes = {7000 - 13 * i: Context(1, 7000 - 13 * i, {"partition-id": i, "num-partitions": n},
                                             RecordDict(), dict(run_config)) for i in range(n)}

    def set_run(self, run):
        self._run = run

    @property
    def run(self):
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
        return Message(content, dst_node_id, message_type, group_id=group_id, ttl=ttl)

    def get_node_ids(self):
        return list(self.nodes)

    def push_messages(self, messages):
        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = mid = uuid.uuid4().hex
            self.replies[mid] = self.app(msg, self.nodes[msg.metadata.dst_node_id])
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids):
        return [self.replies.pop(i) for i in message_ids if i in self.replies]

    def send_and_receive(self, messages, *, timeout=None):
        return self.pull_messages(self.push_messages(messages))


def run_over_flower(fed):
    """Run a :class:`~polymodal.federated.federation.Federation` through the Flower strategy over an in-process
    Grid, a fresh client per message (as Flower's per-message ClientApp processes); returns the strategy."""
    from polymodal.federated.flower import as_client_app, as_strategy, vector_to_arrays

    app = as_client_app(lambda pid, n, run_config: fed.make_client(pid))
    strategy = as_strategy(fed.make_strategy(), evaluate=fed.evaluate, seed=fed.seed, eval_every=fed.eval_every,
                           clients_per_round=fed.clients_per_round, evaluate_clients=fed.evaluate_clients,
                           min_nodes=fed.n_clients)
    strategy.start(InProcessGrid(app, fed.n_clients, {}), vector_to_arrays(fed.initial), num_rounds=fed.rounds,
                   timeout=60)
    return strategy

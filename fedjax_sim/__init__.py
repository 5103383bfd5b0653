"""fedjax-sim: federated and distributed learning simulation where clients are a batch axis."""

from fedjax_sim.aggregation import weighted_mean
from fedjax_sim.algorithms.centralized import centralized
from fedjax_sim.algorithms.fedavg import ServerState, fed_avg
from fedjax_sim.algorithms.local import Algorithm
from fedjax_sim.checkpoints import CheckpointError
from fedjax_sim.config_checks import ConfigError
from fedjax_sim.config_files import load_config
from fedjax_sim.data.cifar100 import load_cifar100, make_federated_cifar100
from fedjax_sim.data.client_data import ClientData, pooled_client_data, train_client_data
from fedjax_sim.data.dataset import DataError, FederatedDataset
from fedjax_sim.data.shakespeare import build_shakespeare, iid_reshuffle, load_leaf_json
from fedjax_sim.engine import map_clients
from fedjax_sim.evaluation import make_evaluator
from fedjax_sim.optimizers import make_optimizer
from fedjax_sim.simulate import DivergenceError, simulate
from fedjax_sim.tasks import Task, make_task

__all__ = [
    "Algorithm",
    "CheckpointError",
    "ClientData",
    "ConfigError",
    "DataError",
    "DivergenceError",
    "FederatedDataset",
    "ServerState",
    "Task",
    "build_shakespeare",
    "centralized",
    "fed_avg",
    "iid_reshuffle",
    "load_cifar100",
    "load_config",
    "load_leaf_json",
    "make_evaluator",
    "make_federated_cifar100",
    "make_optimizer",
    "make_task",
    "map_clients",
    "pooled_client_data",
    "simulate",
    "train_client_data",
    "weighted_mean",
]

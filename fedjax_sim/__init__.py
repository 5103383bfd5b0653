"""fedjax-sim: federated and distributed learning simulation where clients are a batch axis."""

from fedjax_sim.algorithms.async_sgd import async_sgd
from fedjax_sim.algorithms.centralized import centralized
from fedjax_sim.algorithms.fedavg import fed_avg, fedavg_parts
from fedjax_sim.algorithms.feddyn import feddyn_parts
from fedjax_sim.algorithms.fednova import fednova_parts
from fedjax_sim.algorithms.fedprox import fedprox_parts
from fedjax_sim.algorithms.gossip import gossip_sgd
from fedjax_sim.algorithms.local_sgd import local_sgd
from fedjax_sim.algorithms.qfedavg import qfedavg_parts
from fedjax_sim.algorithms.scaffold import scaffold_parts
from fedjax_sim.config.checks import ConfigError
from fedjax_sim.config.files import load_config
from fedjax_sim.core.aggregation import weighted_mean
from fedjax_sim.core.engine import Execution, map_clients
from fedjax_sim.core.fedopt import server_optimizer
from fedjax_sim.core.local import Algorithm
from fedjax_sim.core.optimizers import make_optimizer
from fedjax_sim.core.robust_aggregation import coordinate_median, krum, norm_clipping, trimmed_mean
from fedjax_sim.core.round import (
    ClientInput,
    ClientOutput,
    FederatedParts,
    ServerState,
    federated_algorithm,
    federated_round,
)
from fedjax_sim.core.selection import make_sampler
from fedjax_sim.core.speeds import make_job_durations
from fedjax_sim.core.tasks import Task, cross_entropy, make_task
from fedjax_sim.data.cifar100 import load_cifar100, make_federated_cifar100
from fedjax_sim.data.client_data import ClientData, pooled_client_data, train_client_data
from fedjax_sim.data.dataset import DataError, FederatedDataset
from fedjax_sim.data.shakespeare import build_shakespeare, iid_reshuffle, load_leaf_json
from fedjax_sim.models import registry as models
from fedjax_sim.runtime.checkpoints import CheckpointError
from fedjax_sim.runtime.evaluation import make_evaluator
from fedjax_sim.runtime.simulate import DivergenceError, multi_round, simulate

__all__ = [
    "Algorithm",
    "CheckpointError",
    "ClientData",
    "ClientInput",
    "ClientOutput",
    "ConfigError",
    "DataError",
    "DivergenceError",
    "Execution",
    "FederatedDataset",
    "FederatedParts",
    "ServerState",
    "Task",
    "async_sgd",
    "build_shakespeare",
    "centralized",
    "coordinate_median",
    "cross_entropy",
    "fed_avg",
    "fedavg_parts",
    "feddyn_parts",
    "federated_algorithm",
    "federated_round",
    "fednova_parts",
    "fedprox_parts",
    "gossip_sgd",
    "iid_reshuffle",
    "krum",
    "load_cifar100",
    "load_config",
    "load_leaf_json",
    "local_sgd",
    "make_evaluator",
    "make_federated_cifar100",
    "make_job_durations",
    "make_optimizer",
    "make_sampler",
    "make_task",
    "map_clients",
    "models",
    "multi_round",
    "norm_clipping",
    "pooled_client_data",
    "qfedavg_parts",
    "scaffold_parts",
    "server_optimizer",
    "simulate",
    "train_client_data",
    "trimmed_mean",
    "weighted_mean",
]

"""`mutatenn targets`: the named deployment targets."""
from __future__ import annotations


def cmd_targets(args) -> int:
    from ..build import CPU_TARGETS, host_cpu_name

    for name, mcpu in CPU_TARGETS.items():
        print(f"{name:14s} LLVM, mcpu={mcpu or host_cpu_name()}")
    print(f"{'cuda':14s} CUDA (built anywhere; runs only where a GPU exists)")
    print(f"{'rpc://H:P[/T]':14s} TVM RPC server at H:P, code built for target T (default cpu-generic)")
    print(f"{'rpc-tracker://H:P/K[/T]':14s} a free server of device key K from the TVM RPC tracker at H:P, "
          "code built for T (as above)")
    return 0

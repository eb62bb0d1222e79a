"""Building a program for a deployment stack: targets (`targets`), the one build-option
schema (`options`) and the Relax pipeline with shared kernels (`pipeline`). Data flows
targets -> options -> pipeline; nothing here imports the campaign or the CLI."""
from .options import (
    DEFAULT_OPT_LEVEL,
    DEFAULT_SCHEDULE,
    OPTIONS,
    SCHEDULES,
    VARIANT_GRAMMAR,
    BuildOption,
    BuildOptions,
    OptionError,
    database_digest,
)
from .pipeline import (
    BuildStats,
    Kernels,
    SharedBuild,
    build_artifact,
    build_with_kernels,
    pass_context,
    pipeline_passes,
    relax_pipeline,
    table_passes,
)
from .targets import (
    CPU_FEATURES,
    CPU_TARGETS,
    TRACKER_SYNTAX,
    Target,
    check_runnable,
    cuda_arch,
    host_cpu_flags,
    host_cpu_name,
    known_target_names,
    parse_target,
)

__all__ = ["DEFAULT_OPT_LEVEL", "DEFAULT_SCHEDULE", "OPTIONS", "SCHEDULES", "VARIANT_GRAMMAR", "BuildOption",
           "BuildOptions", "OptionError", "database_digest", "BuildStats", "Kernels", "SharedBuild", "build_artifact",
           "build_with_kernels", "pass_context", "pipeline_passes", "relax_pipeline", "table_passes", "CPU_FEATURES",
           "CPU_TARGETS", "TRACKER_SYNTAX", "Target", "check_runnable", "cuda_arch", "host_cpu_flags",
           "host_cpu_name", "known_target_names", "parse_target"]

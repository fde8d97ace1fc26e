"""Re-export of :mod:`nequip_np.kernels.plan` (the plan moved next to the kernels that consume it)."""

from nequip_np.kernels.plan import (  # noqa: F401
    Block,
    ConvPlan,
    ConvTables,
    GatePlan,
    GateTables,
    LayerPlan,
    LinearPlan,
    LinearTables,
    ModelPlan,
    SelfConnectionPlan,
    SelfConnectionTables,
    TPPath,
    blocks,
    build_plan,
    conv_plan,
    gate_plan,
    hidden_irreps,
    linear_plan,
    self_connection_plan,
)

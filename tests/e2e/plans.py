"""Stack plans for e2e tests with stacks of their own: the default plan, some functions' env changed."""

from __future__ import annotations

from collections.abc import Mapping

from functions.manifest import FUNCTIONS
from local.functions_stack import function_component
from local.stack import ComponentGroup, PlanStep, StackOptions, default_plan


def plan_with_function_env(
    options: StackOptions, overrides: Mapping[str, Mapping[str, str]]
) -> list[PlanStep]:
    """The default plan, with `overrides[name]` added to the env of the function `name`."""
    functions = ComponentGroup(
        tuple(function_component(f, extra_env=overrides.get(f.name)) for f in FUNCTIONS)
    )

    def replaced(step: PlanStep) -> PlanStep:
        is_functions = isinstance(step, ComponentGroup) and any(
            c.name.startswith("fn-") for c in step.components
        )
        return functions if is_functions else step

    return [replaced(step) for step in default_plan(options)]

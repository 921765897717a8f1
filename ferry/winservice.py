"""What ``pythonservice.exe`` loads on Windows: ``ferry.winservice.AgentService``.

The service framework (``service/windows.py``) knows the SCM but not the agent; this module,
in the top layer, builds the agent instance a service of a given name runs and hands it over.
"""

from __future__ import annotations

from typing import Any

from agent.config import AgentConfig
from agent.daemon import Agent
from core.config import load
from core.lifecycle import Service
from core.paths import instance_paths
from protocol import ClientType
from service.windows import scm, service_class


def agent_for(name: str) -> tuple[Service, float]:
    """The agent instance a service of that name runs (system level), and its drain timeout."""
    paths = instance_paths("agent", name.removeprefix("ferry-agent-"), True)
    loaded = load(paths.config_file, AgentConfig)
    agent = Agent(loaded.config, paths.name, paths.data_dir, client_type=ClientType.SERVER,
                  config_dir=paths.config_file.parent, handle_signals=False)
    return agent, loaded.config.drain_timeout


def __getattr__(name: str) -> Any:
    """``AgentService``: the ServiceFramework class, made when pywin32 is there (Windows)."""
    if name == "AgentService":
        return service_class(*scm(), make_agent=agent_for)
    raise AttributeError(name)

"""Inference engines behind one protocol: the embedded llama.cpp engine and OpenAI-compatible upstreams."""

from gatehouse.engines.base import Engine, EngineBusy, EngineFailure, EngineReply, UpstreamRejected, Usage

__all__ = ["Engine", "EngineBusy", "EngineFailure", "EngineReply", "Usage", "UpstreamRejected"]

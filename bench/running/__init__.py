"""Running routers: the router contract (`router`) and lookup by name or `module:Class[opt=value]`
(`routers`), the one episode loop (`runner`), metering and the cost of every call (`metering`), NVML
(`gpu`), checkpoints of a run and what a sweep finished (`resume`), an evaluation or a training as one
MLflow run (`evaluate`), and one router's seed trained then evaluated (`cell`). Uses environments and
models; knows no particular router and nothing of reports."""

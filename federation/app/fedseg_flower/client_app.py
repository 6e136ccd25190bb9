"""ClientApp: answers the server's query, trains and evaluates on the site's own data."""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from fedseg_flower import task

app = ClientApp()


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Declare the site's name and tasks."""
    spec = task.site_spec(context.node_config)
    return Message(content=task.declaration(spec), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Local training of the site's heads and the shared block."""
    spec = task.site_spec(context.node_config)
    return Message(content=task.train(spec, msg.content), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Federated evaluation of the global model on the site's cases."""
    spec = task.site_spec(context.node_config)
    return Message(content=task.evaluate(spec, msg.content), reply_to=msg)

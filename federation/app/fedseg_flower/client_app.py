"""ClientApp: answers the server's queries, trains and evaluates on the site's own data."""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from federation.message_keys import FINGERPRINT_ACTION, PLANS_ACTION
from fedseg_flower import task

app = ClientApp()


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Declare the site's name and tasks (and, for nnU-Net, describe its dataset)."""
    spec = task.site_spec(context.node_config)
    return Message(content=task.declaration(spec, msg.content), reply_to=msg)


@app.query(FINGERPRINT_ACTION)
def fingerprint(msg: Message, context: Context) -> Message:
    """nnU-Net: the site's fingerprint summary (histograms and sums of its cases)."""
    spec = task.site_spec(context.node_config)
    return Message(content=task.fingerprint(spec, msg.content), reply_to=msg)


@app.train(PLANS_ACTION)
def plans(msg: Message, context: Context) -> Message:
    """nnU-Net: preprocess the site's cases for the shared plans; echo their SHA-256."""
    spec = task.site_spec(context.node_config)
    return Message(content=task.prepare(spec, msg.content), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Local training of the global model on the site's cases."""
    spec = task.site_spec(context.node_config)
    return Message(content=task.train(spec, msg.content), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Federated evaluation of the global model on the site's cases."""
    spec = task.site_spec(context.node_config)
    return Message(content=task.evaluate(spec, msg.content), reply_to=msg)

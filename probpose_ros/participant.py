"""A ROS participant of the benchmark programs (bench_delivery, soak): its own rclpy context on a
``domain``, one node, an executor spinning it in a daemon thread until :meth:`Participant.close`."""
import threading


class Participant:
    """``self.node`` in a private context on ``domain``; subclasses create their entities before
    calling :meth:`start` (the executor thread)."""

    def __init__(self, domain: int, name: str):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _spin(self):
        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.05)
        except Exception:  # noqa: BLE001  (shutting down)
            pass

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.context.try_shutdown()
        if self.thread.is_alive():
            self.thread.join(timeout=5.0)

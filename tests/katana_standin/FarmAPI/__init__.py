"""Stand-in for Katana's FarmAPI package (tests only)."""

import enum


class FarmPluginException(Exception):
    """A farm plug-in failed."""


class JobNotFoundException(FarmPluginException):
    """No job with that id."""


class Job:
    """A job on the farm, as Katana lists it."""

    class State(enum.Enum):
        Queued = "Queued"
        Running = "Running"
        Stopping = "Stopping"
        Completed = "Completed"
        Failed = "Failed"
        Stopped = "Stopped"
        Unknown = "Unknown"

    def __init__(self, jobId, name="", state=None):
        self.jobId = jobId
        self.name = name
        self.state = state


class BaseFarmPlugin:
    """What Katana calls; a subclass implements what its farm can do."""

    class InstallationMetadata:
        def __init__(self):
            self.installationPath = None
            self.version = None
            self.platform = None
            self.environment = {}

    def createTemporaryFolder(self, renderContextName):
        raise NotImplementedError

    def copyRenderFiles(self, renderContextName, filePaths):
        raise NotImplementedError

    def getInstallationMetadata(self):
        raise NotImplementedError

    def getEnvironmentForJob(self, renderContextName):
        return {}

    def submitJob(self, jobRequest):
        raise NotImplementedError

    def getJobs(self):
        raise NotImplementedError

    def getJobState(self, jobId):
        raise NotImplementedError

    def getRenderLogFilename(self, jobId):
        raise NotImplementedError

    def stopJob(self, jobId):
        raise NotImplementedError

    def restartJob(self, jobId):
        raise NotImplementedError

    def test(self):
        raise NotImplementedError

"A stand-in for Kaggle's API on 127.0.0.1:7777 (the client's KAGGLE_API_ENVIRONMENT=TEST endpoint): a submission's calls and a kernel push."
import base64
import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = 7777


class KaggleStandIn(BaseHTTPRequestHandler):
    "StartSubmissionUpload, the upload PUT, CreateSubmission and SaveKernel; credentials and competitions checked as Kaggle does."
    user, key = 'kituser', '0123456789abcdef'
    competitions = {'kit-demo': 'open', 'rules-not-accepted': 'rules'}

    def log_message(self, *args): pass

    def _reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes: return self.rfile.read(int(self.headers.get('Content-Length', 0)))

    def do_POST(self):
        req = json.loads(self._body() or b'{}')
        expected = 'Basic ' + base64.b64encode(f'{self.user}:{self.key}'.encode()).decode()
        if self.headers.get('Authorization') != expected: return self._reply(401, {'code': 401, 'message': 'Unauthenticated'})
        if self.path.endswith('/SaveKernel'): return self._save_kernel(req)
        state = self.competitions.get(req.get('competitionName'))
        if state is None: return self._reply(404, {'code': 404, 'message': 'Competition not found'})
        if state == 'rules': return self._reply(403, {'code': 403, 'message': 'You must accept this competition\'s rules'})
        if self.path.endswith('/StartSubmissionUpload'):
            token = f"tok{len(self.server.uploads)}"
            self.server.expected[token] = req['contentLength']
            return self._reply(200, {'token': token, 'createUrl': f'http://localhost:{PORT}/upload/{token}'})
        if self.path.endswith('/CreateSubmission'):
            token = req['blobFileTokens']
            if token not in self.server.uploads: return self._reply(400, {'code': 400, 'message': 'unknown upload'})
            self.server.submissions.append(dict(competition=req['competitionName'], description=req.get('submissionDescription', ''),
                                                content=self.server.uploads[token]))
            return self._reply(200, {'message': 'Successfully submitted to ' + req['competitionName'], 'ref': len(self.server.submissions)})
        self._reply(404, {'code': 404, 'message': 'no such call'})

    def _save_kernel(self, req):
        "Keep the pushed kernel; unknown competitions come back in the response, as Kaggle reports them."
        unknown = [c for c in req.get('competitionDataSources', []) if c not in self.competitions]
        if unknown: return self._reply(200, {'invalidCompetitionSources': unknown})
        self.server.kernels.append(req)
        return self._reply(200, {'ref': '/code/' + req['slug'], 'url': f'http://localhost:{PORT}/code/' + req['slug'],
                                 'versionNumber': len(self.server.kernels)})

    def do_PUT(self):
        token = self.path.rsplit('/', 1)[-1]
        data = self._body()
        if self.server.expected.get(token) != len(data): return self._reply(400, {'code': 400, 'message': 'size mismatch'})
        self.server.uploads[token] = data
        self._reply(200, {})


@contextmanager
def kaggle_stand_in():
    "The stand-in server, running; yields it (its `submissions` and `kernels` list what was received)."
    server = ThreadingHTTPServer(('127.0.0.1', PORT), KaggleStandIn)
    server.uploads, server.expected, server.submissions, server.kernels = {}, {}, [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try: yield server
    finally:
        server.shutdown()
        server.server_close()

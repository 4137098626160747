/**
 * Identity refusals. Both are 401s, as OpenAI answers a bad key, so an SDK raises its
 * AuthenticationError; neither request is sent upstream.
 */
import { ProxyError } from '../proxy/errors.ts';

/** A key this proxy issued that is disabled or unknown (https://platform.openai.com/docs/guides/error-codes). */
export class InvalidApiKeyError extends ProxyError {
  readonly code = 'invalid_api_key';
  readonly status = 401;
  readonly type = 'invalid_request_error';
  readonly outcome = 'rejected';
  override readonly name = 'InvalidApiKeyError';
}

/** `requireInstitution: true` and neither the key nor a trusted header says whose request this is. */
export class InstitutionRequiredError extends ProxyError {
  readonly code = 'institution_required';
  readonly status = 401;
  readonly type = 'invalid_request_error';
  readonly outcome = 'rejected';
  override readonly name = 'InstitutionRequiredError';
}

export {
  scriptedDecoderModel,
  type DecoderArchitecture,
  type ScriptedDecoderOptions,
} from './scripted-decoder.js';
